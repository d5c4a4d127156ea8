/**
 * packaging/handlers/udrbd-crm-fence-peer.sh and udrbd-crm-unfence-peer.sh,
 * every exit-code path, run for real (bash) against stubbed `cibadmin`,
 * `crmadmin`, `crm_attribute` and `udrbdadm` on PATH: the cibadmin stub
 * serves a CIB file, applies -C / -D to it and records each call; udrbdadm
 * prints canned sh-status text (a second one once a constraint was created,
 * for the double check). The handler never reads /proc/drbd.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FENCE = path.join(ROOT, 'packaging', 'handlers', 'udrbd-crm-fence-peer.sh');
const UNFENCE = path.join(ROOT, 'packaging', 'handlers', 'udrbd-crm-unfence-peer.sh');
const ID = 'drbd-fence-by-handler-rabbitmq-ms_drbd_rabbitmq';

const STUB_CIBADMIN = `#!/bin/bash
S="$STUB_DIR"
printf '%s\\n' "$*" >> "$S/cibadmin.calls"
case "$1" in
  -Ql) [ -f "$S/cib-local.rc" ] && exit "$(cat "$S/cib-local.rc")"; cat "$S/cib.xml" ;;
  -Q) [ -f "$S/cib-dc.rc" ] && exit "$(cat "$S/cib-dc.rc")"; cat "$S/cib.xml" ;;
  -C)
    [ -f "$S/create.rc" ] && exit "$(cat "$S/create.rc")"
    printf '%s\\n' "$5" > "$S/new.xml"
    awk -v f="$S/new.xml" '/<\\/constraints>/ { while ((getline l < f) > 0) print l } { print }' "$S/cib.xml" > "$S/cib.tmp" && mv "$S/cib.tmp" "$S/cib.xml"
    touch "$S/created" ;;
  -D)
    id=$(printf '%s' "$3" | sed -n 's/.* id="\\([^"]*\\)".*/\\1/p')
    sed -i "/<rsc_location .*id=\\"$id\\"/,/<\\/rsc_location>/d" "$S/cib.xml" ;;
esac
`;
const STUB_UDRBDADM = `#!/bin/sh
S="$STUB_DIR"
printf '%s\\n' "$*" >> "$S/udrbdadm.calls"
if [ -f "$S/created" ] && [ -f "$S/state-after-create" ]; then cat "$S/state-after-create"; else cat "$S/state"; fi
`;
const STUB_CRMADMIN = `#!/bin/sh
printf '%s\\n' "$*" >> "$STUB_DIR/crmadmin.calls"
[ -f "$STUB_DIR/crmadmin.ok" ] || exit 1
if [ -f "$STUB_DIR/crmadmin.pcmk21" ]; then echo "Controller on $4 in state S_NOT_DC: ok"; else echo "Status of crmd@$4: S_NOT_DC (ok)"; fi
`;
const STUB_CRM_ATTRIBUTE = `#!/bin/sh
printf '%s\\n' "$*" >> "$STUB_DIR/crm_attribute.calls"
exit 1
`;

interface PeerNode {
  /** node_state attributes of the peer `beta`; null: no node_state entry. */
  state: { in_ccm: string; crmd: string; expected: string } | null;
}

function cib(opts: { peer?: PeerNode; resource?: string; constraint?: string; stonith?: boolean; extraNodes?: string[] } = {}): string {
  const peer = opts.peer ?? { state: { in_ccm: 'true', crmd: 'online', expected: 'member' } };
  const nodes = ['alpha', 'beta', ...(opts.extraNodes ?? [])];
  return [
    '<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="12" num_updates="0" admin_epoch="0">',
    '  <configuration>',
    '    <crm_config>',
    '      <cluster_property_set id="cib-bootstrap-options">',
    `        <nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled" value="${opts.stonith === true ? 'true' : 'false'}"/>`,
    '      </cluster_property_set>',
    '    </crm_config>',
    '    <nodes>',
    ...nodes.map((n, i) => `      <node id="${i + 1}" uname="${n}"/>`),
    '    </nodes>',
    '    <resources>',
    '      <master id="ms_drbd_rabbitmq">',
    '        <primitive id="p_drbd_rabbitmq" class="ocf" provider="udrbd" type="drbd">',
    '          <instance_attributes id="p_drbd_rabbitmq-instance_attributes">',
    `            <nvpair name="drbd_resource" value="${opts.resource ?? 'rabbitmq'}" id="p_drbd_rabbitmq-instance_attributes-drbd_resource"/>`,
    '          </instance_attributes>',
    '        </primitive>',
    '      </master>',
    '    </resources>',
    '    <constraints>',
    ...(opts.constraint ? [opts.constraint] : []),
    '    </constraints>',
    '  </configuration>',
    '  <status>',
    '    <node_state id="1" uname="alpha" in_ccm="true" crmd="online" join="member" expected="member"/>',
    ...(peer.state ? [`    <node_state id="2" uname="beta" in_ccm="${peer.state.in_ccm}" crmd="${peer.state.crmd}" join="member" expected="${peer.state.expected}"/>`] : []),
    '  </status>',
    '</cib>',
    '',
  ].join('\n');
}

/** The constraint the handler places on alpha (attributes in another order than the handler writes them). */
function constraintFor(node: string): string {
  return [
    `<rsc_location id="${ID}" rsc="ms_drbd_rabbitmq">`,
    `  <rule score="-INFINITY" role="Master" id="drbd-fence-by-handler-rabbitmq-rule-ms_drbd_rabbitmq">`,
    `    <expression value="${node}" operation="ne" attribute="#uname" id="drbd-fence-by-handler-rabbitmq-expr-ms_drbd_rabbitmq"/>`,
    '  </rule>',
    '</rsc_location>',
  ].join('\n');
}

function shStatus(disk: string, pdsk: string, role = 'Primary'): string {
  return ['_conf_res_name=rabbitmq', '_minor=1', '_res_name=rabbitmq', '_volume=0', '_known=Configured', '', '_cstate=WFConnection',
    `_role=${role}`, '_peer=Unknown', `_disk=${disk}`, `_pdsk=${pdsk}`, '', '_flags_susp=', '_sh_status_process', ''].join('\n');
}

let stub = '';

beforeEach(() => {
  stub = fs.mkdtempSync(path.join(os.tmpdir(), 'un-crmfence-'));
  for (const [name, text] of [['cibadmin', STUB_CIBADMIN], ['udrbdadm', STUB_UDRBDADM], ['crmadmin', STUB_CRMADMIN], ['crm_attribute', STUB_CRM_ATTRIBUTE]] as const) {
    fs.writeFileSync(path.join(stub, name), text, { mode: 0o755 });
  }
  fs.writeFileSync(path.join(stub, 'crmadmin.ok'), '');
});
afterEach(() => {
  fs.rmSync(stub, { recursive: true, force: true });
});

interface Run {
  code: number;
  out: string;
  cibCalls: string[];
  udrbdadmCalls: string[];
  cibText: string;
}

function setup(opts: { cibText?: string; state?: string; stateAfterCreate?: string } = {}): void {
  fs.writeFileSync(path.join(stub, 'cib.xml'), opts.cibText ?? cib());
  fs.writeFileSync(path.join(stub, 'state'), opts.state ?? shStatus('UpToDate', 'DUnknown'));
  if (opts.stateAfterCreate) fs.writeFileSync(path.join(stub, 'state-after-create'), opts.stateAfterCreate);
}

function lines(file: string): string[] {
  try {
    return fs.readFileSync(path.join(stub, file), 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

function handler(script: string, args: string[] = [], env: Record<string, string | undefined> = {}): Run {
  const fullEnv: Record<string, string> = {
    PATH: `${stub}:/usr/sbin:/usr/bin:/sbin:/bin`,
    STUB_DIR: stub,
    DRBD_RESOURCE: 'rabbitmq',
    DRBD_PEER: 'beta',
    DRBD_CONF: '/etc/udrbd.conf',
    UDRBD_NODE: 'alpha',
  };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete fullEnv[k];
    else fullEnv[k] = v;
  }
  const r = spawnSync('/bin/bash', [script, '--logfacility=none', `--lock-dir=${stub}/lock`, '--timeout=1', '--dc-timeout=1', ...args], { encoding: 'utf8', env: fullEnv, timeout: 30_000 });
  return {
    code: r.status ?? -1,
    out: `${r.stdout}${r.stderr}`,
    cibCalls: lines('cibadmin.calls'),
    udrbdadmCalls: lines('udrbdadm.calls'),
    cibText: fs.readFileSync(path.join(stub, 'cib.xml'), 'utf8'),
  };
}

const fence = (args: string[] = [], env: Record<string, string | undefined> = {}): Run => handler(FENCE, args, env);
const unfence = (args: string[] = [], env: Record<string, string | undefined> = {}): Run => handler(UNFENCE, args, env);
const created = (r: Run): string[] => r.cibCalls.filter((c) => c.startsWith('-C '));

describe('udrbd-crm-fence-peer.sh: exit codes', () => {
  it('4: peer reachable, my disk UpToDate — places the -INFINITY Master rule for every node but me', () => {
    setup();
    const r = fence();
    expect(r.code, r.out).toBe(4);
    expect(created(r)).toHaveLength(1);
    expect(r.cibText).toContain(`<rsc_location rsc="ms_drbd_rabbitmq" id="${ID}">`);
    expect(r.cibText).toContain('<rule role="Master" score="-INFINITY" id="drbd-fence-by-handler-rabbitmq-rule-ms_drbd_rabbitmq">');
    expect(r.cibText).toContain('<expression attribute="#uname" operation="ne" value="alpha" id="drbd-fence-by-handler-rabbitmq-expr-ms_drbd_rabbitmq"/>');
    expect(r.out).toContain(`INFO peer is reachable, my disk is UpToDate: placed constraint '${ID}'`);
    expect(r.udrbdadmCalls).toContain('-c /etc/udrbd.conf sh-status rabbitmq');
    expect(lines('crmadmin.calls')[0]).toMatch(/^-t \d+ -S beta$/);
  });

  it("regression: 4 at once with Pacemaker 2.1's crmadmin answer (\"Controller on beta in state S_NOT_DC: ok\"), not 5 after --timeout", () => {
    setup({ state: shStatus('Consistent', 'DUnknown', 'Secondary') });
    fs.writeFileSync(path.join(stub, 'crmadmin.pcmk21'), '');
    // With the old match it polled crmadmin every 2 s until --timeout and then answered 5.
    const r = fence(['--timeout=20']);
    expect(r.code, r.out).toBe(4);
    expect(r.out).toContain(`INFO peer is reachable, my disk is Consistent: placed constraint '${ID}'`);
    expect(lines('crmadmin.calls')).toHaveLength(1);
  });

  it('regression: finds $PREFIX/sbin/udrbdadm from its own place when udrbd\'s handler PATH (/sbin:/usr/sbin:/bin:/usr/bin) lacks it', () => {
    setup();
    // An install tree as install.sh makes it: PREFIX/lib/udrbd/<handler>, PREFIX/sbin/udrbdadm; PATH has only the other tools.
    const prefix = path.join(stub, 'prefix');
    fs.mkdirSync(path.join(prefix, 'sbin'), { recursive: true });
    fs.mkdirSync(path.join(prefix, 'lib', 'udrbd'), { recursive: true });
    fs.renameSync(path.join(stub, 'udrbdadm'), path.join(prefix, 'sbin', 'udrbdadm'));
    const installed = path.join(prefix, 'lib', 'udrbd', 'udrbd-crm-fence-peer.sh');
    fs.copyFileSync(FENCE, installed);
    const r = handler(installed);
    expect(r.code, r.out).toBe(4);
    expect(r.udrbdadmCalls).toContain('-c /etc/udrbd.conf sh-status rabbitmq');
  });

  it('4: peer reachable, my disk only Consistent', () => {
    setup({ state: shStatus('Consistent', 'DUnknown', 'Secondary') });
    expect(fence().code).toBe(4);
  });

  it('7: peer offline and expected down (fenced), my disk UpToDate', () => {
    setup({ cibText: cib({ peer: { state: { in_ccm: 'false', crmd: 'offline', expected: 'down' } } }) });
    const r = fence();
    expect(r.code, r.out).toBe(7);
    expect(r.out).toContain(`INFO peer is fenced, my disk is UpToDate: placed constraint '${ID}'`);
  });

  it('5: peer unreachable (offline, not expected down), my disk UpToDate: constraint placed', () => {
    setup({ cibText: cib({ peer: { state: { in_ccm: 'false', crmd: 'offline', expected: 'member' } } }) });
    const r = fence();
    expect(r.code, r.out).toBe(5);
    expect(created(r)).toHaveLength(1);
    expect(r.out).toContain('INFO peer is not reachable, my disk is UpToDate');
  });

  it('5: peer unreachable and my disk only Consistent: no constraint', () => {
    setup({ cibText: cib({ peer: { state: { in_ccm: 'false', crmd: 'offline', expected: 'member' } } }), state: shStatus('Consistent', 'DUnknown', 'Secondary') });
    const r = fence();
    expect(r.code, r.out).toBe(5);
    expect(created(r)).toHaveLength(0);
    expect(r.out).toContain('WARNING peer is unreachable, my disk is Consistent: did not place the constraint!');
  });

  it('5: no DC within --dc-timeout, my disk UpToDate: constraint placed all the same', () => {
    setup();
    fs.writeFileSync(path.join(stub, 'cib-dc.rc'), '1');
    const r = fence(['--dc-timeout=0']);
    expect(r.code, r.out).toBe(5);
    expect(created(r)).toHaveLength(1);
  });

  it('5: no DRBD_PEER and several other nodes: waits --timeout, then "unknown"', () => {
    setup({ cibText: cib({ extraNodes: ['gamma'] }) });
    const r = fence(['--timeout=0'], { DRBD_PEER: undefined });
    expect(r.code, r.out).toBe(5);
  });

  it('4: a suitable constraint is already there (attribute order aside): nothing created', () => {
    setup({ cibText: cib({ constraint: constraintFor('alpha') }) });
    const r = fence();
    expect(r.code, r.out).toBe(4);
    expect(created(r)).toHaveLength(0);
    expect(r.out).toContain(`INFO suitable constraint already placed: '${ID}'`);
  });

  it('1: a different constraint with that id (the peer\'s): data integrity at risk', () => {
    setup({ cibText: cib({ constraint: constraintFor('beta') }) });
    const r = fence();
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain(`WARNING constraint ${ID} already exists and is not ours`);
    expect(r.out).toContain('WARNING DATA INTEGRITY at RISK: could not place the fencing constraint!');
  });

  it('1: cibadmin -C fails', () => {
    setup();
    fs.writeFileSync(path.join(stub, 'create.rc'), '76');
    const r = fence();
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain('DATA INTEGRITY at RISK');
  });

  it('1: the peer\'s disk is UpToDate: no constraint', () => {
    setup({ state: shStatus('UpToDate', 'UpToDate') });
    const r = fence();
    expect(r.code, r.out).toBe(1);
    expect(created(r)).toHaveLength(0);
    expect(r.out).toContain('WARNING All peer disks are UpToDate! Did not place the constraint.');
  });

  it('1: the peer came back UpToDate while fencing: the constraint is removed again', () => {
    setup({ stateAfterCreate: shStatus('UpToDate', 'UpToDate') });
    const r = fence();
    expect(r.code, r.out).toBe(1);
    expect(r.cibCalls.filter((c) => c.startsWith('-D '))).toHaveLength(1);
    expect(r.cibText).not.toContain(ID);
  });

  it('1: no local CIB', () => {
    setup();
    fs.writeFileSync(path.join(stub, 'cib-local.rc'), '102');
    expect(fence().code).toBe(1);
  });

  it('1: the CIB has no master/slave set for this resource', () => {
    setup({ cibText: cib({ resource: 'other' }) });
    const r = fence();
    expect(r.code).toBe(1);
    expect(r.out).toContain('WARNING drbd-fencing could not determine the master id of drbd resource rabbitmq');
  });

  it('1: DRBD_RESOURCE missing', () => {
    setup();
    const r = fence([], { DRBD_RESOURCE: undefined });
    expect(r.code).toBe(1);
    expect(r.out).toContain('Environment variable $DRBD_RESOURCE not found');
  });

  it('1: --flock-required and the lock is held', async () => {
    setup();
    fs.mkdirSync(path.join(stub, 'lock'));
    const lockFile = path.join(stub, 'lock', 'fence.rabbitmq');
    const holder = spawn('flock', [lockFile, 'sleep', '20'], { stdio: 'ignore' });
    try {
      const deadline = Date.now() + 5_000;
      while (spawnSync('flock', ['-n', lockFile, 'true']).status === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const r = fence(['--flock-required', '--flock-timeout=0']);
      expect(r.code).toBe(1);
      expect(r.out).toContain(`WARNING Could not get flock on ${lockFile}`);
      expect(r.cibCalls).toEqual([]);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('--master-id, --id-prefix and --role are used as given', () => {
    setup({ cibText: cib({ resource: 'other' }) });
    const r = fence(['--master-id=ms_x', '--id-prefix=my-fence', '--role=Promoted']);
    expect(r.code, r.out).toBe(4);
    expect(r.cibText).toContain('<rsc_location rsc="ms_x" id="my-fence-rabbitmq-ms_x">');
    expect(r.cibText).toContain('<rule role="Promoted" score="-INFINITY" id="my-fence-rabbitmq-rule-ms_x">');
  });
});

describe('udrbd-crm-unfence-peer.sh: exit codes', () => {
  it('0: both disks UpToDate — removes the constraint', () => {
    setup({ cibText: cib({ constraint: constraintFor('alpha') }), state: shStatus('UpToDate', 'UpToDate', 'Secondary') });
    const r = unfence();
    expect(r.code, r.out).toBe(0);
    expect(r.cibCalls).toContain(`-D -X <rsc_location rsc="ms_drbd_rabbitmq" id="${ID}"/>`);
    expect(r.cibText).not.toContain(ID);
    expect(r.out).toContain(`INFO Removed constraint '${ID}'`);
  });

  it('0: no constraint in place', () => {
    setup({ state: shStatus('UpToDate', 'UpToDate') });
    const r = unfence();
    expect(r.code).toBe(0);
    expect(r.out).toContain('No constraint in place, nothing to do.');
  });

  it("1: the peer's disk is not UpToDate yet — the constraint stays", () => {
    setup({ cibText: cib({ constraint: constraintFor('alpha') }), state: shStatus('UpToDate', 'Inconsistent') });
    const r = unfence();
    expect(r.code).toBe(1);
    expect(r.out).toContain("WARNING Peer's disk(s) are NOT all UpToDate, leaving constraint in place.");
    expect(r.cibText).toContain(ID);
  });

  it('1: my disk is not UpToDate yet — the constraint stays', () => {
    setup({ cibText: cib({ constraint: constraintFor('alpha') }), state: shStatus('Inconsistent', 'UpToDate', 'Secondary') });
    const r = unfence();
    expect(r.code).toBe(1);
    expect(r.out).toContain('WARNING My disk(s) are NOT all UpToDate, leaving constraint in place.');
  });

  it('0: --unfence-only-if-owner-match leaves another node\'s constraint alone', () => {
    setup({ cibText: cib({ constraint: constraintFor('beta') }), state: shStatus('UpToDate', 'UpToDate') });
    const r = unfence([], { OCF_RESKEY_unfence_extra_args: '--unfence-only-if-owner-match' });
    expect(r.code).toBe(0);
    expect(r.out).toContain('WARNING Constraint owner does not match, leaving constraint in place.');
    expect(r.cibText).toContain(ID);
  });

  it('1: no local CIB', () => {
    setup();
    fs.writeFileSync(path.join(stub, 'cib-local.rc'), '102');
    expect(unfence().code).toBe(1);
  });
});

describe('the handlers read states only through udrbdadm', () => {
  it('no command line of either script touches /proc/drbd', () => {
    for (const file of [FENCE, UNFENCE]) {
      const code = fs.readFileSync(file, 'utf8').split('\n').filter((l) => !/^\s*#/.test(l));
      expect(code.filter((l) => l.includes('/proc/drbd')), file).toEqual([]);
    }
  });
});
