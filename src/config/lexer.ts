/**
 * config/lexer — splits DRBD 8.4 configuration text into the tokens drbdadm-84's
 * flex scanner produces: longest match wins, ties go to the earlier rule, and the
 * token numbers are drbdadm's own (they appear in "(TK n)" parse errors).
 * Knows nothing about sections or meaning; the parser gives tokens their sense.
 */

/** drbdadm-84's token numbers (enum yytokentype); single characters use their char code. */
export const Tk = {
  eof: 0,
  GLOBAL: 258, RESOURCE: 259, ON: 260, STACKED: 261, IGNORE: 262, NET: 263, DISK: 264, SKIP: 265,
  SYNCER: 266, STARTUP: 267, DISABLE_IP_VERIFICATION: 268, DIALOG_REFRESH: 269, PROTOCOL: 270,
  HANDLER: 271, COMMON: 272, ADDRESS: 273, ALT_ADDRESS: 274, DEVICE: 275, MINOR: 276, META_DISK: 277,
  FLEX_META_DISK: 278, MINOR_COUNT: 279, IPADDR: 280, INTEGER: 281, STRING: 282, ELSE: 283,
  DISK_FLAG: 284, DISK_NO_FLAG: 285, DISK_OPTION: 286, NET_FLAG: 287, NET_NO_FLAG: 288, NET_OPTION: 289,
  SYNCER_FLAG: 290, SYNCER_OPTION: 291, STARTUP_FLAG: 292, STARTUP_OPTION: 293, STARTUP_DELEGATE: 294,
  HANDLER_OPTION: 295, USAGE_COUNT: 296, ASK: 297, YES: 298, NO: 299, THIS_HOST: 300, REMOTE_HOST: 301,
  PROXY: 302, INSIDE: 303, OUTSIDE: 304, MEMLIMIT: 305, PROXY_OPTION: 306, PROXY_DELEGATE: 307,
  ERR_STRING_TOO_LONG: 308, ERR_DQSTRING_TOO_LONG: 309, ERR_DQSTRING: 310, SCI: 311, SDP: 312,
  SSOCKS: 313, IPV4: 314, IPV6: 315, IPADDR6: 316, NET_DELEGATE: 317, INCLUDE: 318, BWLIMIT: 319,
  FLOATING: 320, DEPRECATED_OPTION: 321, VOLUME: 322, CMD_TIMEOUT_SHORT: 323, CMD_TIMEOUT_MEDIUM: 324,
  CMD_TIMEOUT_LONG: 325, RES_OPTION: 326, OPTIONS: 327,
  /* 9.22 added udev-always-use-vnr after the 8.4 list. */
  UDEV_ALWAYS_USE_VNR: 328,
  GROUPING_BASE: 0x1000,
  SYNCER_OLD_OPT: 0x2000,
  PROXY_GROUP: 0x3000,
} as const;

/** Which drbd_limits range an option's value is checked against (drbdadm's enum range_checks). */
export type RangeCheck =
  | 'none' | 'diskSize' | 'timeout' | 'connectInt' | 'pingInt' | 'maxBuffers' | 'maxEpochSize'
  | 'sndbufSize' | 'rcvbufSize' | 'koCount' | 'rate' | 'alExtents' | 'wfcTimeout' | 'degrWfcTimeout'
  | 'outdatedWfcTimeout' | 'cPlanAhead' | 'cDelayTarget' | 'cFillTarget' | 'cMaxRate' | 'cMinRate'
  | 'congFill' | 'congExtents' | 'protocol';

export interface Token {
  /** drbdadm token number, possibly or'ed with a group bit. */
  code: number;
  /** The matched text (flex yytext). */
  text: string;
  /** The value (yylval.txt): text, or the unescaped content of a quoted string. */
  value: string;
  rangeCheck: RangeCheck;
  /** 1-based line the token ended on (drbdadm's `line` after reading it). */
  line: number;
}

type KeywordRule = readonly [code: number, rangeCheck?: RangeCheck];

const D = Tk.DISK_OPTION, N = Tk.NET_OPTION, OLD = Tk.SYNCER_OLD_OPT;
/** Keywords in flex rule order; all are plain words, so ties with STRING go to them. */
const KEYWORDS: ReadonlyMap<string, KeywordRule> = new Map<string, KeywordRule>([
  ['on', [Tk.ON]], ['ignore-on', [Tk.IGNORE]], ['stacked-on-top-of', [Tk.STACKED]], ['floating', [Tk.FLOATING]],
  ['no', [Tk.NO]], ['net', [Tk.NET]], ['yes', [Tk.YES]], ['ask', [Tk.ASK]], ['skip', [Tk.SKIP]],
  ['disk', [Tk.DISK]], ['proxy', [Tk.PROXY]], ['minor', [Tk.MINOR]], ['inside', [Tk.INSIDE]],
  ['volume', [Tk.VOLUME]], ['cmd-timeout-short', [Tk.CMD_TIMEOUT_SHORT]],
  ['cmd-timeout-medium', [Tk.CMD_TIMEOUT_MEDIUM]], ['cmd-timeout-long', [Tk.CMD_TIMEOUT_LONG]],
  ['syncer', [Tk.SYNCER]], ['device', [Tk.DEVICE]], ['global', [Tk.GLOBAL]], ['common', [Tk.COMMON]],
  ['options', [Tk.OPTIONS]], ['outside', [Tk.OUTSIDE]], ['address', [Tk.ADDRESS]],
  ['alternate-link-address', [Tk.ALT_ADDRESS]], ['startup', [Tk.STARTUP]], ['include', [Tk.INCLUDE]],
  ['handlers', [Tk.HANDLER]], ['minor-count', [Tk.MINOR_COUNT]],
  ['disable-ip-verification', [Tk.DISABLE_IP_VERIFICATION]], ['dialog-refresh', [Tk.DIALOG_REFRESH]],
  ['udev-always-use-vnr', [Tk.UDEV_ALWAYS_USE_VNR]],
  ['resource', [Tk.RESOURCE]], ['meta-disk', [Tk.META_DISK]], ['flexible-meta-disk', [Tk.FLEX_META_DISK]],
  ['usage-count', [Tk.USAGE_COUNT]], ['_this_host', [Tk.THIS_HOST]], ['_remote_host', [Tk.REMOTE_HOST]],
  ['sci', [Tk.SCI]], ['ssocks', [Tk.SSOCKS]], ['sdp', [Tk.SDP]], ['ipv4', [Tk.IPV4]], ['ipv6', [Tk.IPV6]],
  ['size', [D, 'diskSize']], ['on-io-error', [D]], ['fencing', [D]], ['max-bio-bvecs', [D]],
  ['disk-timeout', [D]], ['read-balancing', [D]], ['use-bmbv', [Tk.DISK_FLAG]],
  ['disk-barrier', [Tk.DISK_FLAG]], ['disk-flushes', [Tk.DISK_FLAG]], ['disk-drain', [Tk.DISK_FLAG]],
  ['md-flushes', [Tk.DISK_FLAG]], ['no-disk-barrier', [Tk.DISK_NO_FLAG]], ['no-disk-flushes', [Tk.DISK_NO_FLAG]],
  ['no-disk-drain', [Tk.DISK_NO_FLAG]], ['no-md-flushes', [Tk.DISK_NO_FLAG]],
  ['timeout', [N, 'timeout']], ['protocol', [N, 'protocol']], ['ko-count', [N, 'koCount']],
  ['ping-int', [N, 'pingInt']], ['max-buffers', [N, 'maxBuffers']],
  ['sndbuf-size', [N | Tk.PROXY_GROUP, 'sndbufSize']], ['rcvbuf-size', [N | Tk.PROXY_GROUP, 'rcvbufSize']],
  ['connect-int', [N, 'connectInt']], ['cram-hmac-alg', [N]], ['shared-secret', [N]],
  ['max-epoch-size', [N, 'maxEpochSize']], ['after-sb-0pri', [N]], ['after-sb-1pri', [N]],
  ['after-sb-2pri', [N]], ['rr-conflict', [N]], ['ping-timeout', [N | Tk.PROXY_GROUP]],
  ['unplug-watermark', [N]], ['data-integrity-alg', [N]], ['on-congestion', [N]],
  ['socket-check-timeout', [N]], ['congestion-fill', [N, 'congFill']],
  ['congestion-extents', [N, 'congExtents']], ['allow-two-primaries', [Tk.NET_FLAG]],
  ['always-asbp', [Tk.NET_FLAG]], ['no-tcp-cork', [Tk.NET_NO_FLAG]], ['tcp-cork', [Tk.NET_FLAG]],
  ['discard-my-data', [Tk.NET_DELEGATE]], ['rate', [OLD | D, 'rate']], ['resync-rate', [D, 'rate']],
  ['after', [OLD | D]], ['resync-after', [D]], ['verify-alg', [OLD | N]], ['csums-alg', [OLD | N]],
  ['csums-after-crash-only', [Tk.NET_FLAG]], ['al-extents', [OLD | D, 'alExtents']],
  ['al-updates', [Tk.DISK_FLAG]], ['discard-zeroes-if-aligned', [Tk.DISK_FLAG]],
  ['cpu-mask', [OLD | Tk.RES_OPTION]], ['use-rle', [OLD | Tk.NET_FLAG]],
  ['delay-probe-volume', [Tk.DEPRECATED_OPTION]], ['delay-probe-interval', [Tk.DEPRECATED_OPTION]],
  ['c-plan-ahead', [OLD | D, 'cPlanAhead']], ['c-delay-target', [OLD | D, 'cDelayTarget']],
  ['c-fill-target', [OLD | D, 'cFillTarget']], ['c-max-rate', [OLD | D, 'cMaxRate']],
  ['c-min-rate', [OLD | D, 'cMinRate']], ['throttle-threshold', [Tk.DEPRECATED_OPTION]],
  ['hold-off-threshold', [Tk.DEPRECATED_OPTION]], ['on-no-data-accessible', [OLD | Tk.RES_OPTION]],
  ['wfc-timeout', [Tk.STARTUP_OPTION, 'wfcTimeout']], ['degr-wfc-timeout', [Tk.STARTUP_OPTION, 'degrWfcTimeout']],
  ['outdated-wfc-timeout', [Tk.STARTUP_OPTION, 'outdatedWfcTimeout']],
  ['stacked-timeouts', [Tk.STARTUP_DELEGATE]], ['become-primary-on', [Tk.STARTUP_DELEGATE]],
  ['wait-after-sb', [Tk.STARTUP_FLAG]], ['pri-on-incon-degr', [Tk.HANDLER_OPTION]],
  ['pri-lost-after-sb', [Tk.HANDLER_OPTION]], ['pri-lost', [Tk.HANDLER_OPTION]],
  ['initial-split-brain', [Tk.HANDLER_OPTION]], ['split-brain', [Tk.HANDLER_OPTION]],
  ['outdate-peer', [Tk.HANDLER_OPTION]], ['fence-peer', [Tk.HANDLER_OPTION]],
  ['unfence-peer', [Tk.HANDLER_OPTION]], ['local-io-error', [Tk.HANDLER_OPTION]],
  ['before-resync-target', [Tk.HANDLER_OPTION]], ['after-resync-target', [Tk.HANDLER_OPTION]],
  ['before-resync-source', [Tk.HANDLER_OPTION]], ['memlimit', [Tk.PROXY_OPTION | Tk.PROXY_GROUP]],
  ['read-loops', [Tk.PROXY_OPTION | Tk.PROXY_GROUP]], ['compression', [Tk.PROXY_OPTION | Tk.PROXY_GROUP]],
  ['bwlimit', [Tk.PROXY_OPTION | Tk.PROXY_GROUP]], ['plugin', [Tk.PROXY_DELEGATE]],
  ['out-of-sync', [Tk.HANDLER_OPTION]],
]);

/** Every keyword the scanner knows, in rule order (config/support judges each one). */
export function keywordNames(): string[] {
  return [...KEYWORDS.keys()];
}

/** Longest plain word flex accepts as one STRING token (129 chars is TK_ERR_STRING_TOO_LONG). */
const STRING_LENGTH_MAX = 128;
/** Longest quoted string content (drbdadm: {0,255}). */
const DQSTRING_LENGTH_MAX = 255;

const IPV4_RE = /(?:[0-9]{1,3}\.){3}[0-9]{1,3}/y;
const NUM_RE = /[0-9]{1,8}[MKGs]?/y;
const HEX4 = '[0-9a-fA-F]{1,4}';
const IPV6_RES: readonly RegExp[] = [
  new RegExp(`(?:(?:${HEX4}:){0,5}${HEX4})?:(?:${HEX4})?:(?:${HEX4}(?::${HEX4}){0,5})?(?:%[a-zA-Z0-9/._-]{1,128})?`, 'y'),
  /::[fF]{4}:(?:[0-9]{1,3}\.){3}[0-9]{1,3}/y,
];

function isStringChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) ||
    c === 0x2f || c === 0x2e || c === 0x5f || c === 0x2d;
}

function stickyLength(re: RegExp, text: string, at: number): number {
  re.lastIndex = at;
  const m = re.exec(text);
  return m ? m[0].length : 0;
}

/** drbdadm's unescape(): drop the quotes, a backslash keeps the next character literally. */
function unescapeQuoted(raw: string): string {
  let out = '';
  for (let i = 1; i < raw.length - 1; i++) {
    const ch = raw[i]!;
    if (ch === '\\' && i + 1 < raw.length - 1) {
      i++;
      out += raw[i]!;
    } else out += ch;
  }
  return out;
}

export class Lexer {
  private pos = 0;
  line = 1;

  constructor(private readonly text: string) {}

  next(): Token {
    const text = this.text;
    for (;;) {
      if (this.pos >= text.length) return this.make(Tk.eof, '', 'none');
      const c = text.charCodeAt(this.pos);
      if (c === 0x0a) {
        this.line++;
        this.pos++;
        continue;
      }
      if (c === 0x20 || c === 0x09 || c === 0x0d) {
        this.pos++;
        continue;
      }
      if (c === 0x23) {
        const end = text.indexOf('\n', this.pos);
        this.pos = end < 0 ? text.length : end;
        continue;
      }
      break;
    }
    const at = this.pos;
    const c = text.charCodeAt(at);
    if (c === 0x22) return this.quoted(at);

    let wordLength = 0;
    while (at + wordLength < text.length && wordLength <= STRING_LENGTH_MAX && isStringChar(text.charCodeAt(at + wordLength))) {
      wordLength++;
    }
    const ipv4Length = stickyLength(IPV4_RE, text, at);
    const numLength = stickyLength(NUM_RE, text, at);
    const ipv6Length = Math.max(...IPV6_RES.map((re) => stickyLength(re, text, at)));
    const opchar = '{};[]:'.includes(text[at]!) ? 1 : 0;
    const best = Math.max(wordLength, ipv4Length, numLength, ipv6Length, opchar);
    if (best === 0) {
      this.pos = at + 1;
      return this.make(Tk.ELSE, text[at]!, 'none');
    }
    const matched = text.slice(at, at + best);
    this.pos = at + best;
    if (opchar === best && best === 1 && ipv4Length < 1 && numLength < 1 && wordLength < 1) {
      return this.make(c, matched, 'none');
    }
    if (wordLength === best && best <= STRING_LENGTH_MAX) {
      const keyword = KEYWORDS.get(matched) ?? (/^after-sb-[012]pri$/.test(matched) ? ([N] as const) : undefined);
      if (keyword) return this.make(keyword[0], matched, keyword[1] ?? 'none');
    }
    if (ipv4Length === best) return this.make(Tk.IPADDR, matched, 'none');
    if (ipv6Length === best) return this.make(Tk.IPADDR6, matched, 'none');
    if (numLength === best) return this.make(Tk.INTEGER, matched, 'none');
    if (wordLength > STRING_LENGTH_MAX) {
      this.pos = at + STRING_LENGTH_MAX + 1;
      return this.make(Tk.ERR_STRING_TOO_LONG, text.slice(at, this.pos), 'none');
    }
    return this.make(Tk.STRING, matched, 'none');
  }

  private quoted(at: number): Token {
    const text = this.text;
    let i = at + 1;
    let chars = 0;
    for (;;) {
      if (i >= text.length) {
        // flex: the unterminated string rule needs a backslash or newline; at EOF it is a lone '"'.
        this.pos = at + 1;
        return this.make(Tk.ELSE, '"', 'none');
      }
      const ch = text[i]!;
      if (ch === '"') {
        const raw = text.slice(at, i + 1);
        this.pos = i + 1;
        const token = this.make(Tk.STRING, raw, 'none');
        token.value = unescapeQuoted(raw);
        return token;
      }
      if (chars === DQSTRING_LENGTH_MAX) {
        this.pos = i + 1;
        return this.make(Tk.ERR_DQSTRING_TOO_LONG, text.slice(at, i + 1), 'none');
      }
      if (ch === '\n') {
        // flex's string-error rule swallows the newline without counting it, as drbdadm does.
        this.pos = i + 1;
        return this.make(Tk.ERR_DQSTRING, text.slice(at, i + 1), 'none');
      }
      if (ch === '\\') {
        if (i + 1 >= text.length || text[i + 1] === '\n') {
          this.pos = i + 1;
          return this.make(Tk.ERR_DQSTRING, text.slice(at, i + 1), 'none');
        }
        i += 2;
      } else i++;
      chars++;
    }
  }

  private make(code: number, text: string, rangeCheck: RangeCheck): Token {
    return { code, text, value: text, rangeCheck, line: this.line };
  }
}
