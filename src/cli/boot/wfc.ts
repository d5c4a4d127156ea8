/**
 * cli/boot/wfc — how long `wait-connect` waits (drbdsetup.c, its wait-connect command), as
 * drbdsetup-84 decides it: the configured (or given) wfc-timeout,
 * degr-wfc-timeout and outdated-wfc-timeout, DRBD's consistency fix-ups
 * with its two-line messages, then the one the kernel's timeout type picks.
 * Seconds; 0 = wait forever. Also the texts drbdadm's wait-con-int dialog
 * prints. Pure.
 */
import type { TimeoutType } from '../../daemon/startup-info.js';

export interface WfcTimeouts {
  wfcTimeoutS: number;
  degrWfcTimeoutS: number;
  outdatedWfcTimeoutS: number;
}

/** drbd_limits.h: DRBD_WFC_TIMEOUT_MAX (and the same for degr / outdated). */
export const WFC_TIMEOUT_MAX_S = 300_000;

export interface ChosenTimeout {
  timeoutS: number;
  /** What drbdsetup prints on stderr while fixing the values up. */
  messages: string[];
}

/**
 * drbdsetup's choose_timeout: degr is capped by wfc, outdated by degr —
 * including drbd-utils' quirk that the capped outdated value is set to the
 * wfc value while the message names the degr value.
 */
export function chooseWfcTimeout(given: WfcTimeouts, type: TimeoutType): ChosenTimeout {
  let { wfcTimeoutS: wfc, degrWfcTimeoutS: degr, outdatedWfcTimeoutS: outdated } = given;
  const messages: string[] = [];
  if (wfc > 0 && (wfc < degr || degr === 0)) {
    degr = wfc;
    messages.push(`degr-wfc-timeout has to be shorter than wfc-timeout\ndegr-wfc-timeout implicitly set to wfc-timeout (${degr}s)\n`);
  }
  if (degr > 0 && (degr < outdated || outdated === 0)) {
    outdated = wfc;
    messages.push(`outdated-wfc-timeout has to be shorter than degr-wfc-timeout\noutdated-wfc-timeout implicitly set to degr-wfc-timeout (${degr}s)\n`);
  }
  const timeoutS = type === 'UT_DEGRADED' ? degr : type === 'UT_PEER_OUTDATED' ? outdated : wfc;
  return { timeoutS, messages };
}

/** drbdsetup's range check of a given timeout; undefined when fine. */
export function timeoutRangeError(name: 'wfc_timeout' | 'degr_wfc_timeout' | 'outdated_wfc_timeout', valueS: number): string | undefined {
  if (Number.isInteger(valueS) && valueS >= 0 && valueS <= WFC_TIMEOUT_MAX_S) return undefined;
  return `${name} => ${valueS} out of range [0..${WFC_TIMEOUT_MAX_S}]`;
}

/** The banner drbdadm-84's wait-con-int prints after 10 s of waiting (values of the first resource). */
export function waitBanner(degrWfcTimeout: string, wfcTimeout: string, resource: string): string {
  return (
    '\n***************************************************************\n' +
    " DRBD's startup script waits for the peer node(s) to appear.\n" +
    ' - If this node was already a degraded cluster before the\n' +
    `   reboot, the timeout is ${degrWfcTimeout} seconds. [degr-wfc-timeout]\n` +
    ' - If the peer was available before the reboot, the timeout\n' +
    `   is ${wfcTimeout} seconds. [wfc-timeout]\n` +
    `   (These values are for resource '${resource}'; 0 sec -> wait forever)\n`
  );
}

export const ABORT_PROMPT = " To abort waiting enter 'yes' [ -- ]:";

/** Redraws the seconds counter over the prompt's `[ -- ]` (save cursor, column 31, restore). */
export function counterRedraw(elapsedS: number): string {
  return `\x1b[s\x1b[31G[${String(elapsedS).padStart(4)}]:\x1b[u`;
}
