/**
 * The OCF agent packaging/ocf/drbd, every exit-code path, run for real (bash,
 * Debian's ocf-shellfuncs) against a stubbed `udrbdadm` and `crm_master` on
 * PATH: the stub prints canned sh-status text, records every call, and moves
 * to the next canned state when a verb succeeds (up → Secondary, primary →
 * Primary, ...). Needs resource-agents (ocf-shellfuncs) and libxml2-utils
 * (xmllint): fails, not skips, without them.
 */
import { describe, it, expect, beforeAll, beforeEach, afterEach } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const AGENT = path.join(ROOT, 'packaging', 'ocf', 'drbd');
const SHELLFUNCS = '/usr/lib/ocf/lib/heartbeat/ocf-shellfuncs';
const DTD_DIR = '/usr/share/resource-agents';
const RESOURCE = 'ocr0';

interface State {
  known?: 'Configured' | 'Unconfigured';
  cstate?: string;
  role?: string;
  peer?: string;
  disk?: string;
  pdsk?: string;
}

/** sh-status text as udrbdadm prints it for one volume. */
function shStatus(s: State): string {
  const known = s.known ?? 'Configured';
  const v = known === 'Unconfigured' ? { cstate: 'Unconfigured', role: '', peer: '', disk: '', pdsk: '' } : {
    cstate: s.cstate ?? 'Connected', role: s.role ?? 'Secondary', peer: s.peer ?? 'Secondary', disk: s.disk ?? 'UpToDate', pdsk: s.pdsk ?? 'UpToDate',
  };
  return [
    `_conf_res_name=${RESOURCE}`, '_conf_file_line=/etc/udrbd.conf:1', '', '_stacked_on=', '_stacked_on_device=', '_stacked_on_minor=', '_conf_volume=0',
    '_minor=64', `_res_name=${RESOURCE}`, '_volume=0', `_known=${known}`, '',
    `_cstate=${v.cstate}`, `_role=${v.role}`, `_peer=${v.peer}`, `_disk=${v.disk}`, `_pdsk=${v.pdsk}`, '',
    '_flags_susp=', '_flags_aftr_isp=', '_flags_peer_isp=', '_flags_user_isp=', '', '_resynced_percent=', '', '_sh_status_process', '', '',
  ].join('\n');
}

const STUB_UDRBDADM = `#!/bin/sh
S="$STUB_DIR"
printf '%s\\n' "$*" >> "$S/calls"
while [ $# -gt 0 ]; do
  case "$1" in -c|--node) shift 2 ;; -*) shift ;; *) break ;; esac
done
verb="$1"
case "$verb" in
  sh-status)
    if [ -f "$S/sh-status.rc" ]; then echo "sh-status failed (stub)" >&2; exit "$(cat "$S/sh-status.rc")"; fi
    cat "$S/state"; exit 0 ;;
  status) cat "$S/status.json" 2>/dev/null; exit "$(cat "$S/status.rc" 2>/dev/null || echo 0)" ;;
  dump) cat "$S/dump" 2>/dev/null; exit 0 ;;
esac
rc=0
[ -f "$S/$verb.rc" ] && rc="$(cat "$S/$verb.rc")"
[ -f "$S/$verb.stderr" ] && cat "$S/$verb.stderr" >&2
if [ "$rc" = 0 ] && [ -f "$S/$verb.next" ]; then cp "$S/$verb.next" "$S/state"; fi
exit "$rc"
`;
const STUB_CRM_MASTER = `#!/bin/sh
printf '%s\\n' "$*" >> "$STUB_DIR/crm_master.log"
`;

let stub = '';
let conf = '';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  calls: string[];
  scores: string[];
  elapsedMs: number;
}

function setState(s: State): void {
  fs.writeFileSync(path.join(stub, 'state'), shStatus(s));
}
/** After `verb` succeeds, the stub reports `s`. */
function onVerb(verb: string, s: State): void {
  fs.writeFileSync(path.join(stub, `${verb}.next`), shStatus(s));
}
function verbExits(verb: string, code: number, stderr = ''): void {
  fs.writeFileSync(path.join(stub, `${verb}.rc`), String(code));
  if (stderr !== '') fs.writeFileSync(path.join(stub, `${verb}.stderr`), stderr);
}

/** The clone meta attributes of a correct promotable clone (notify=true, 2 clones, 1 master). */
const CLONE_META = {
  OCF_RESKEY_CRM_meta_notify: 'true',
  OCF_RESKEY_CRM_meta_clone_max: '2',
  OCF_RESKEY_CRM_meta_clone_node_max: '1',
  OCF_RESKEY_CRM_meta_master_max: '1',
  OCF_RESKEY_CRM_meta_master_node_max: '1',
};

function agent(action: string | null, env: Record<string, string | undefined> = {}, meta: Record<string, string | undefined> = CLONE_META): Run {
  for (const f of ['calls', 'crm_master.log']) fs.rmSync(path.join(stub, f), { force: true });
  const fullEnv: Record<string, string> = {
    PATH: `${stub}:/usr/sbin:/usr/bin:/sbin:/bin`,
    STUB_DIR: stub,
    OCF_ROOT: '/usr/lib/ocf',
    OCF_RESOURCE_INSTANCE: RESOURCE,
    OCF_RESKEY_drbd_resource: RESOURCE,
    OCF_RESKEY_drbdconf: conf,
    OCF_RESKEY_CRM_meta_interval: '20000',
    UDRBD_NODE: 'alpha',
    UDRBD_OCF_PROMOTE_MIN_S: '0',
    TMPDIR: stub,
  };
  for (const [k, v] of Object.entries({ ...meta, ...env })) {
    if (v === undefined) delete fullEnv[k];
    else fullEnv[k] = v;
  }
  const started = Date.now();
  const r = spawnSync('/bin/bash', action === null ? [AGENT] : [AGENT, action], { env: fullEnv, encoding: 'utf8', timeout: 60_000 });
  const read = (f: string): string[] => {
    try {
      return fs.readFileSync(path.join(stub, f), 'utf8').split('\n').filter((l) => l !== '');
    } catch {
      return [];
    }
  };
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, calls: read('calls'), scores: read('crm_master.log'), elapsedMs: Date.now() - started };
}

/** The udrbdadm verbs (with their arguments, without -c/--node) an agent run made. */
function verbs(r: Run): string[] {
  return r.calls.map((c) => c.replace(/^-c \S+ --node \S+ /, ''));
}

beforeAll(() => {
  for (const [what, file] of [['ocf-shellfuncs (apt-get install resource-agents)', SHELLFUNCS], ['xmllint (apt-get install libxml2-utils)', '/usr/bin/xmllint'], ['ra-api-1.dtd (resource-agents)', path.join(DTD_DIR, 'ra-api-1.dtd')]] as const) {
    if (!fs.existsSync(file)) throw new Error(`test prerequisite missing: ${what} at ${file}`);
  }
});

beforeEach(() => {
  stub = fs.mkdtempSync(path.join(os.tmpdir(), 'oc-agent-'));
  fs.writeFileSync(path.join(stub, 'udrbdadm'), STUB_UDRBDADM, { mode: 0o755 });
  fs.writeFileSync(path.join(stub, 'crm_master'), STUB_CRM_MASTER, { mode: 0o755 });
  conf = path.join(stub, 'udrbd.conf');
  fs.writeFileSync(conf, `resource ${RESOURCE} { }\n`);
  setState({ known: 'Unconfigured' });
});

afterEach(() => {
  fs.rmSync(stub, { recursive: true, force: true });
});

describe('ocf:udrbd:drbd meta-data and usage', () => {
  it('meta-data exits 0 and is valid OCF XML (xmllint --valid against ra-api-1.dtd)', () => {
    const r = agent('meta-data');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">');
    expect(r.stdout).toContain('<version>1.1</version>');
    const lint = spawnSync('xmllint', ['--noout', '--valid', '-'], { input: r.stdout, cwd: DTD_DIR, encoding: 'utf8' });
    expect(lint.stderr).toBe('');
    expect(lint.status).toBe(0);
  });

  it("meta-data lists ocf:linbit:drbd's parameters and says which do nothing here", () => {
    const r = agent('meta-data');
    for (const p of ['drbd_resource', 'drbdconf', 'adjust_master_score', 'stop_outdates_secondary', 'wfc_timeout', 'remove_master_score_if_peer_primary', 'fail_promote_early_if_peer_primary', 'unfence_if_all_uptodate', 'ignore_missing_notifications']) {
      expect(r.stdout).toContain(`<parameter name="${p}"`);
    }
    expect(r.stdout).toMatch(/name="unfence_if_all_uptodate">\n<longdesc lang="en">Does nothing here/);
  });

  it('no action: usage and OCF_ERR_ARGS (2); unknown action: OCF_ERR_UNIMPLEMENTED (3); usage: 0', () => {
    expect(agent(null).code).toBe(2);
    expect(agent('migrate_to').code).toBe(3);
    expect(agent('usage').code).toBe(0);
  });
});

describe('validate-all', () => {
  it('a correct promotable clone validates (0)', () => {
    expect(agent('validate-all').code).toBe(0);
  });

  it('drbd_resource missing or with bad characters: OCF_ERR_CONFIGURED (6)', () => {
    const missing = agent('validate-all', { OCF_RESKEY_drbd_resource: undefined });
    expect(missing.code).toBe(6);
    expect(missing.stderr).toContain('you must specify drbd_resource=<NAME>');
    expect(agent('validate-all', { OCF_RESKEY_drbd_resource: 'r 0' }).code).toBe(6);
  });

  it('drbdconf unreadable: OCF_ERR_INSTALLED (5)', () => {
    const r = agent('validate-all', { OCF_RESKEY_drbdconf: path.join(stub, 'nope.conf') });
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('cannot read the configuration file');
  });

  it('resource not defined for this node: 5, but a probe says not running (7)', () => {
    verbExits('sh-dev', 1, `'${RESOURCE}' not defined in your config (for this host).`);
    const r = agent('validate-all');
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('not defined in your config');
    expect(agent('monitor', { OCF_RESKEY_CRM_meta_interval: '0' }).code).toBe(7);
  });

  it('udrbdadm not installed: 5', () => {
    fs.rmSync(path.join(stub, 'udrbdadm'));
    const r = agent('validate-all', { PATH: `${stub}:/nonexistent` , OCF_FUNCTIONS_DIR: '/usr/lib/ocf/lib/heartbeat' });
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('udrbdadm not found');
  });

  it('notify not enabled: 6, unless ignore_missing_notifications=true', () => {
    const r = agent('validate-all', { OCF_RESKEY_CRM_meta_notify: undefined });
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('you really should enable notify');
    expect(agent('validate-all', { OCF_RESKEY_CRM_meta_notify: 'false', OCF_RESKEY_ignore_missing_notifications: 'true' }).code).toBe(0);
  });

  it('clone-node-max or master-node-max other than 1 (or unset): 6 with the meta attribute named', () => {
    const r = agent('validate-all', { OCF_RESKEY_CRM_meta_clone_node_max: '2' });
    expect(r.code).toBe(6);
    expect(r.stderr).toContain('expected clone-node-max = 1, but found 2');
    const unset = agent('validate-all', { OCF_RESKEY_CRM_meta_master_node_max: undefined });
    expect(unset.code).toBe(6);
    expect(unset.stderr).toContain('expected master-node-max = 1, but found unset');
  });

  it('master-max 2 needs allow-two-primaries in the resource (6 without, 0 with); master-max 3 is refused', () => {
    fs.writeFileSync(path.join(stub, 'dump'), `resource ${RESOURCE} {\n    net {\n        protocol C;\n    }\n}\n`);
    const without = agent('validate-all', { OCF_RESKEY_CRM_meta_master_max: '2' });
    expect(without.code).toBe(6);
    expect(without.stderr).toContain('does not allow-two-primaries');
    fs.writeFileSync(path.join(stub, 'dump'), `resource ${RESOURCE} {\n    net {\n        allow-two-primaries yes;\n    }\n}\n`);
    expect(agent('validate-all', { OCF_RESKEY_CRM_meta_master_max: '2' }).code).toBe(0);
    expect(agent('validate-all', { OCF_RESKEY_CRM_meta_master_max: '3' }).code).toBe(6);
  });

  it('a bad adjust_master_score falls back to the default (and still validates)', () => {
    const r = agent('validate-all', { OCF_RESKEY_adjust_master_score: '10 5 1000 10000' });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('BAD adjust_master_score value 10 > 5 ; falling back to default');
  });

  it('wfc_timeout that is not a number: 6', () => {
    expect(agent('validate-all', { OCF_RESKEY_wfc_timeout: 'soon' }).code).toBe(6);
  });

  it("passes this node's name: UDRBD_NODE when set, uname -n otherwise", () => {
    expect(agent('validate-all').calls[0]).toBe(`-c ${conf} --node alpha sh-dev ${RESOURCE}`);
    const uname = spawnSync('uname', ['-n'], { encoding: 'utf8' }).stdout.trim();
    expect(agent('validate-all', { UDRBD_NODE: undefined }).calls[0]).toBe(`-c ${conf} --node ${uname} sh-dev ${RESOURCE}`);
  });
});

describe('monitor: status → exit code', () => {
  it('Secondary: 0; Primary: OCF_RUNNING_MASTER (8)', () => {
    setState({ role: 'Secondary' });
    expect(agent('monitor').code).toBe(0);
    setState({ role: 'Primary' });
    expect(agent('monitor').code).toBe(8);
  });

  it('not running (Unconfigured): OCF_NOT_RUNNING (7), and the master score is removed', () => {
    fs.writeFileSync(path.join(stub, 'status.json'), `[{"resource":"${RESOURCE}","node":"alpha","cstate":"Unconfigured"}]`);
    const r = agent('monitor');
    expect(r.code).toBe(7);
    expect(r.scores).toEqual(['-l reboot -D']);
  });

  it('a probe of a stopped resource: 7 and the scores are left alone', () => {
    const r = agent('monitor', { OCF_RESKEY_CRM_meta_interval: '0' });
    expect(r.code).toBe(7);
    expect(r.scores).toEqual([]);
  });

  it('a resource process that died without down: OCF_ERR_GENERIC (1) with the reason', () => {
    fs.writeFileSync(path.join(stub, 'status.json'), `[{"resource":"${RESOURCE}","node":"alpha","cstate":"Unconfigured","processDied":{"pid":4242,"log":"/var/log/udrbd/x.log"}}]`);
    fs.writeFileSync(path.join(stub, 'status.rc'), '10');
    const r = agent('monitor');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('died without');
    expect(verbs(r)).toContain(`status --json ${RESOURCE}`);
  });

  it('an unknown role: 1; sh-status failing: 1', () => {
    setState({ role: 'Unknown' });
    expect(agent('monitor').code).toBe(1);
    verbExits('sh-status', 20);
    const r = agent('monitor');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`udrbdadm sh-status ${RESOURCE} failed`);
  });
});

describe('master score (crm_master -Q -l reboot -v N, removal -D) as ocf:linbit:drbd computes it', () => {
  const cases: [string, State, string][] = [
    ['UpToDate and Primary', { role: 'Primary', disk: 'UpToDate', pdsk: 'DUnknown', cstate: 'WFConnection', peer: 'Unknown' }, '-Q -l reboot -v 10000'],
    ['UpToDate, peer disk known', { role: 'Secondary', disk: 'UpToDate', pdsk: 'Outdated' }, '-Q -l reboot -v 10000'],
    ['UpToDate, peer unknown', { role: 'Secondary', disk: 'UpToDate', pdsk: 'DUnknown', cstate: 'WFConnection', peer: 'Unknown' }, '-Q -l reboot -v 1000'],
    ['only the peer UpToDate', { role: 'Secondary', disk: 'Inconsistent', pdsk: 'UpToDate', cstate: 'SyncTarget' }, '-Q -l reboot -v 10'],
    ['Consistent only (default 0)', { role: 'Secondary', disk: 'Consistent', pdsk: 'DUnknown', cstate: 'WFConnection' }, '-l reboot -D'],
    ['Inconsistent', { role: 'Secondary', disk: 'Inconsistent', pdsk: 'Inconsistent' }, '-l reboot -D'],
    ['Outdated', { role: 'Secondary', disk: 'Outdated', pdsk: 'DUnknown', cstate: 'WFConnection' }, '-l reboot -D'],
    ['Diskless', { role: 'Secondary', disk: 'Diskless', pdsk: 'Outdated' }, '-l reboot -D'],
    ['unknown disk state', { role: 'Secondary', disk: 'Failed', pdsk: 'DUnknown' }, '-l reboot -D'],
  ];
  for (const [name, state, expected] of cases) {
    it(`${name}: crm_master ${expected}`, () => {
      setState(state);
      const r = agent('monitor');
      expect([0, 8]).toContain(r.code);
      expect(r.scores).toEqual([expected]);
    });
  }

  it('Attaching/Negotiating: the score is left as it is', () => {
    setState({ role: 'Secondary', disk: 'Negotiating', pdsk: 'DUnknown' });
    expect(agent('monitor').scores).toEqual([]);
  });

  it('adjust_master_score overrides the four values (Consistent-only gets the first)', () => {
    const adjust = { OCF_RESKEY_adjust_master_score: '5 20 300 4000' };
    setState({ role: 'Secondary', disk: 'Consistent', pdsk: 'DUnknown', cstate: 'WFConnection' });
    expect(agent('monitor', adjust).scores).toEqual(['-Q -l reboot -v 5']);
    setState({ role: 'Secondary', disk: 'Inconsistent', pdsk: 'UpToDate' });
    expect(agent('monitor', adjust).scores).toEqual(['-Q -l reboot -v 20']);
    setState({ role: 'Secondary', disk: 'UpToDate', pdsk: 'DUnknown' });
    expect(agent('monitor', adjust).scores).toEqual(['-Q -l reboot -v 300']);
    setState({ role: 'Primary', disk: 'UpToDate', pdsk: 'UpToDate' });
    expect(agent('monitor', adjust).scores).toEqual(['-Q -l reboot -v 4000']);
  });

  it('remove_master_score_if_peer_primary=true: a Secondary connected to an UpToDate Primary has its score removed', () => {
    setState({ role: 'Secondary', peer: 'Primary', disk: 'UpToDate', pdsk: 'UpToDate' });
    expect(agent('monitor').scores).toEqual(['-Q -l reboot -v 10000']);
    expect(agent('monitor', { OCF_RESKEY_remove_master_score_if_peer_primary: 'true' }).scores).toEqual(['-l reboot -D']);
  });
});

describe('start', () => {
  it('not running: up, adjust, wait-connect with wfc_timeout for all three timeouts, score; 0', () => {
    onVerb('up', { role: 'Secondary', disk: 'UpToDate', pdsk: 'UpToDate' });
    const r = agent('start', { OCF_RESKEY_wfc_timeout: '7' });
    expect(r.code).toBe(0);
    expect(verbs(r)).toEqual([
      `sh-dev ${RESOURCE}`, `sh-status ${RESOURCE}`, `status --json ${RESOURCE}`, `up ${RESOURCE}`, `sh-status ${RESOURCE}`,
      `adjust ${RESOURCE}`, `wait-connect --wfc-timeout=7 --degr-wfc-timeout=7 --outdated-wfc-timeout=7 ${RESOURCE}`, `sh-status ${RESOURCE}`,
    ]);
    expect(r.scores).toEqual(['-Q -l reboot -v 10000']);
  });

  it('a wait-connect timeout is not a failure (0)', () => {
    onVerb('up', { role: 'Secondary', disk: 'UpToDate', pdsk: 'DUnknown', cstate: 'WFConnection', peer: 'Unknown' });
    verbExits('wait-connect', 5);
    const r = agent('start');
    expect(r.code).toBe(0);
    expect(r.scores).toEqual(['-Q -l reboot -v 1000']);
  });

  it("up failing twice: OCF_ERR_GENERIC (1) with udrbdadm's message", () => {
    verbExits('up', 10, 'ocr0: option on-io-error pass_on is refused by udrbd');
    const r = agent('start');
    expect(r.code).toBe(1);
    expect(verbs(r).filter((v) => v.startsWith('up '))).toHaveLength(2);
    expect(r.stderr).toContain('udrbdadm up ocr0 failed: ocr0: option on-io-error pass_on is refused by udrbd');
  });

  it('already Primary: demoted to Secondary, 0', () => {
    setState({ role: 'Primary' });
    onVerb('secondary', { role: 'Secondary' });
    const r = agent('start');
    expect(r.code).toBe(0);
    expect(verbs(r)).toContain(`secondary ${RESOURCE}`);
  });

  it('validation failure (notify off): 6 and nothing is started', () => {
    const r = agent('start', { OCF_RESKEY_CRM_meta_notify: undefined });
    expect(r.code).toBe(6);
    expect(verbs(r).some((v) => v.startsWith('up '))).toBe(false);
  });
});

describe('stop', () => {
  it('Secondary: down, master score removed, 0', () => {
    setState({ role: 'Secondary' });
    onVerb('down', { known: 'Unconfigured' });
    const r = agent('stop');
    expect(r.code).toBe(0);
    expect(verbs(r).filter((v) => v.startsWith('down '))).toHaveLength(2);
    expect(r.scores).toEqual(['-l reboot -D']);
  });

  it('Primary: secondary first, then down; 0', () => {
    setState({ role: 'Primary' });
    onVerb('secondary', { role: 'Secondary' });
    onVerb('down', { known: 'Unconfigured' });
    const r = agent('stop');
    expect(r.code).toBe(0);
    const v = verbs(r);
    expect(v.indexOf(`secondary ${RESOURCE}`)).toBeGreaterThan(-1);
    expect(v.indexOf(`down ${RESOURCE}`)).toBeGreaterThan(v.indexOf(`secondary ${RESOURCE}`));
  });

  it('stop_outdates_secondary with another node master: outdate and -INFINITY', () => {
    setState({ role: 'Secondary', pdsk: 'DUnknown', cstate: 'WFConnection', peer: 'Unknown' });
    onVerb('down', { known: 'Unconfigured' });
    const r = agent('stop', { OCF_RESKEY_stop_outdates_secondary: 'true', OCF_RESKEY_CRM_meta_notify_master_uname: 'beta ' });
    expect(r.code).toBe(0);
    expect(verbs(r)).toContain(`outdate ${RESOURCE}`);
    expect(r.scores).toEqual(['-Q -l reboot -v -INFINITY', '-l reboot -D']);
  });

  it('stop_outdates_secondary but the master is the one being stopped: no outdate', () => {
    setState({ role: 'Secondary' });
    onVerb('down', { known: 'Unconfigured' });
    const r = agent('stop', { OCF_RESKEY_stop_outdates_secondary: 'true', OCF_RESKEY_CRM_meta_notify_master_uname: 'beta', OCF_RESKEY_CRM_meta_notify_stop_uname: 'beta' });
    expect(r.code).toBe(0);
    expect(verbs(r)).not.toContain(`outdate ${RESOURCE}`);
  });

  it('validation failing on stop: tries udrbdadm down directly and reports success (no fencing)', () => {
    const r = agent('stop', { OCF_RESKEY_drbdconf: path.join(stub, 'gone.conf') });
    expect(r.code).toBe(0);
    expect(verbs(r)).toEqual([`down ${RESOURCE}`]);
    expect(r.stderr).toContain('fencing of this node narrowly avoided');
  });
});

describe('promote', () => {
  it('Secondary with UpToDate data: primary, 0', () => {
    setState({ role: 'Secondary' });
    onVerb('primary', { role: 'Primary' });
    const r = agent('promote');
    expect(r.code).toBe(0);
    expect(verbs(r)).toContain(`primary ${RESOURCE}`);
  });

  it("primary refused with exit 17: 1 with linbit's reason, and the action lasts UDRBD_OCF_PROMOTE_MIN_S", () => {
    setState({ role: 'Secondary', disk: 'Inconsistent' });
    verbExits('primary', 17, '64: State change failed: (-2) Need access to UpToDate data');
    const r = agent('promote', { UDRBD_OCF_PROMOTE_MIN_S: '2' });
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toContain('Refusing to be promoted to Primary without access to UpToDate data');
    expect(verbs(r).filter((v) => v.startsWith('primary '))).toHaveLength(1);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(1_900);
  });

  it('not started: 1', () => {
    const r = agent('promote');
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toContain('cannot promote a resource that was not started');
  });

  it('fail_promote_early_if_peer_primary with the peer still Primary: 1 after one try, score removed', () => {
    setState({ role: 'Secondary', peer: 'Primary' });
    verbExits('primary', 11, '64: State change failed: (-1) Multiple primaries not allowed by config');
    const r = agent('promote', { OCF_RESKEY_fail_promote_early_if_peer_primary: 'true' });
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toContain('Peer node already/still Primary');
    expect(verbs(r).filter((v) => v.startsWith('primary '))).toHaveLength(1);
    expect(r.scores).toEqual(['-l reboot -D']);
  });
});

describe('demote', () => {
  it('Primary: secondary, 0; already Secondary: 0', () => {
    setState({ role: 'Primary' });
    onVerb('secondary', { role: 'Secondary' });
    const r = agent('demote');
    expect(r.code).toBe(0);
    expect(verbs(r)).toContain(`secondary ${RESOURCE}`);
    expect(agent('demote').code).toBe(0);
  });

  it('not running: 1', () => {
    expect(agent('demote').code).toBe(1);
  });
});

describe('notify (always 0)', () => {
  it('pre start of the peer: re-adjust to the restarted peer', () => {
    setState({ role: 'Primary', cstate: 'StandAlone', pdsk: 'DUnknown', peer: 'Unknown' });
    const r = agent('notify', { OCF_RESKEY_CRM_meta_notify_type: 'pre', OCF_RESKEY_CRM_meta_notify_operation: 'start', OCF_RESKEY_CRM_meta_notify_start_uname: 'beta' });
    expect(r.code).toBe(0);
    expect(verbs(r)).toContain(`adjust ${RESOURCE}`);
    expect(r.scores).toEqual([]);
  });

  it('post promote: recompute the score', () => {
    setState({ role: 'Secondary', disk: 'UpToDate', pdsk: 'UpToDate', peer: 'Primary' });
    const r = agent('notify', { OCF_RESKEY_CRM_meta_notify_type: 'post', OCF_RESKEY_CRM_meta_notify_operation: 'promote' });
    expect(r.code).toBe(0);
    expect(r.scores).toEqual(['-Q -l reboot -v 10000']);
    expect(verbs(r)).not.toContain(`adjust ${RESOURCE}`);
  });

  it('post with the link lost while another node is master: outdate self (stop_outdates_secondary)', () => {
    setState({ role: 'Secondary', disk: 'UpToDate', pdsk: 'DUnknown', cstate: 'WFConnection', peer: 'Unknown' });
    const r = agent('notify', {
      OCF_RESKEY_CRM_meta_notify_type: 'post', OCF_RESKEY_CRM_meta_notify_operation: 'promote',
      OCF_RESKEY_CRM_meta_notify_master_uname: 'beta', OCF_RESKEY_stop_outdates_secondary: 'true',
    });
    expect(r.code).toBe(0);
    expect(verbs(r)).toContain(`outdate ${RESOURCE}`);
    expect(r.scores).toEqual(['-Q -l reboot -v 1000', '-Q -l reboot -v -INFINITY']);
  });

  it('post with the link lost while this node is the only master: no outdate', () => {
    setState({ role: 'Primary', disk: 'UpToDate', pdsk: 'DUnknown', cstate: 'WFConnection', peer: 'Unknown' });
    const r = agent('notify', {
      OCF_RESKEY_CRM_meta_notify_type: 'post', OCF_RESKEY_CRM_meta_notify_operation: 'demote',
      OCF_RESKEY_CRM_meta_notify_master_uname: 'alpha', OCF_RESKEY_stop_outdates_secondary: 'true',
    });
    expect(r.code).toBe(0);
    expect(verbs(r)).not.toContain(`outdate ${RESOURCE}`);
  });

  it('pre stop: nothing to do, 0', () => {
    setState({ role: 'Secondary' });
    const r = agent('notify', { OCF_RESKEY_CRM_meta_notify_type: 'pre', OCF_RESKEY_CRM_meta_notify_operation: 'stop' });
    expect(r.code).toBe(0);
    expect(verbs(r)).toEqual([`sh-dev ${RESOURCE}`]);
  });
});

describe('reload', () => {
  it('running: adjust, 0; adjust refused: 1', () => {
    setState({ role: 'Secondary' });
    const r = agent('reload');
    expect(r.code).toBe(0);
    expect(verbs(r)).toContain(`adjust ${RESOURCE}`);
    verbExits('adjust', 10, 'cannot change disk online');
    expect(agent('reload').code).toBe(1);
  });

  it('not running: 1', () => {
    expect(agent('reload').code).toBe(1);
  });
});
