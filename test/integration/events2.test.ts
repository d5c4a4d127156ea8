/**
 * `udrbdadm events` on real resource processes: drbdsetup-84 events2's
 * grammar line by line (one regex per kind and object), `--now` on both
 * nodes of a pair, a stream that follows connect, promotion, a resync
 * (--statistics), handlers, a disconnect and a `down`, `--timestamps`, and
 * all-resources mode with two resources where one comes up and goes down
 * while the stream is open. File-backed disks, NBD socket only.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, UDRBDADM, type NodeName } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
const clusters: Cluster[] = [];
const streams: EventsProcess[] = [];

afterEach(async () => {
  for (const s of streams.splice(0)) s.kill();
  // last first: a later cluster may share an earlier one's runtime dir and config (all-resources test)
  for (const c of clusters.splice(0).reverse()) await c.destroy();
});

function newCluster(options: ConstructorParameters<typeof Cluster>[0]): Cluster {
  const c = new Cluster(options);
  clusters.push(c);
  return c;
}

// ---- the grammar: one regex per kind and object (drbdsetup-84 event_key + print_notifications) ----

const NAME = '[-%+./0-9:=@A-Z_a-z]+';
const ROLE = '(?:Primary|Secondary|Unknown)';
const DISK = '(?:Diskless|Attaching|Failed|Negotiating|Inconsistent|Outdated|DUnknown|Consistent|UpToDate)';
const CONNECTION = '(?:StandAlone|Disconnecting|Unconnected|Timeout|BrokenPipe|NetworkFailure|ProtocolError|TearDown|Connecting|Connected)';
const REPLICATION =
  '(?:StandAlone|Disconnecting|Unconnected|Timeout|BrokenPipe|NetworkFailure|ProtocolError|TearDown|WFConnection|Off|Established|StartingSyncS|StartingSyncT|WFBitMapS|WFBitMapT|WFSyncUUID|SyncSource|SyncTarget|VerifyS|VerifyT|PausedSyncS|PausedSyncT|Ahead|Behind)';
const N = '\\d+';
const STAMP = '(?:\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{6}[+-]\\d\\d:\\d\\d )?';
const CONN_KEY = ` name:${NAME} peer-node-id:0(?: conn-name:peer)?`;
const opt = (fields: string[]): string => fields.map((f) => `(?: ${f})?`).join('');
const STATE: Record<string, string> = {
  resource: ` name:${NAME}${opt([`role:${ROLE}`, 'suspended:(?:no|[a-z,-]+)', 'write-ordering:(?:none|drain|flush|barrier)'])}`,
  connection: `${CONN_KEY}${opt([`connection:${CONNECTION}`, `role:${ROLE}`, 'congested:(?:yes|no)'])}`,
  device: ` name:${NAME} volume:${N} minor:${N}${opt([`disk:${DISK}`])}(?: size:${N} read:${N} written:${N} al-writes:${N} bm-writes:${N} upper-pending:${N} lower-pending:${N})?${opt(['al-suspended:(?:yes|no)', 'blocked:(?:no|upper|lower|upper,lower)'])}`,
  'peer-device': `${CONN_KEY} volume:${N}${opt([`replication:${REPLICATION}`, `peer-disk:${DISK}`, 'resync-suspended:(?:no|[a-z,]+)'])}(?: received:${N} sent:${N} out-of-sync:${N} pending:${N} unacked:${N})?`,
};
const KEY: Record<string, string> = {
  resource: ` name:${NAME}`,
  connection: CONN_KEY,
  device: ` name:${NAME} volume:${N} minor:${N}`,
  'peer-device': `${CONN_KEY} volume:${N}`,
};
const GRAMMAR: RegExp[] = [
  new RegExp(`^${STAMP}exists -$`),
  ...Object.keys(STATE).map((o) => new RegExp(`^${STAMP}(?:exists|create|change) ${o}${STATE[o]}$`)),
  ...Object.keys(KEY).map((o) => new RegExp(`^${STAMP}destroy ${o}${KEY[o]}$`)),
  new RegExp(`^${STAMP}call helper${CONN_KEY}(?: volume:${N} minor:${N})? helper:[a-z-]+$`),
  new RegExp(`^${STAMP}response helper${CONN_KEY}(?: volume:${N} minor:${N})? helper:[a-z-]+ status:${N}$`),
];

/** Every line is one of events2's forms, a change shows at least one field, and no line repeats the one before. */
function expectGrammar(lines: string[]): void {
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) {
    expect(GRAMMAR.some((re) => re.test(line)), `not events2 grammar: '${line}'`).toBe(true);
    if (/(^| )change /.test(line)) {
      const withoutKey = line.replace(/^.*?change \S+( (name|peer-node-id|conn-name|volume|minor):\S+)*/, '');
      expect(withoutKey.length, `change line without a changed field: '${line}'`).toBeGreaterThan(0);
    }
  }
  for (let i = 1; i < lines.length; i++) expect(lines[i], `line ${i} repeats line ${i - 1}`).not.toBe(lines[i - 1]);
}

// ---- a streaming `udrbdadm events` -------------------------------------------------------------

class EventsProcess {
  private stdout = '';
  stderr = '';
  readonly exited: Promise<number>;
  private readonly child: ChildProcessWithoutNullStreams;

  constructor(c: Cluster, node: NodeName, args: string[], configPath = c.configPaths[node]) {
    this.child = spawn(process.execPath, [UDRBDADM, '-c', configPath, '--node', node, 'events', ...args], { env: c.env, stdio: 'pipe' });
    this.child.stdout.on('data', (b: Buffer) => (this.stdout += b.toString()));
    this.child.stderr.on('data', (b: Buffer) => (this.stderr += b.toString()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code ?? -1)));
    streams.push(this);
  }

  lines(): string[] {
    return this.stdout.split('\n').filter((l) => l.length > 0);
  }

  async waitLine(what: string | RegExp, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines().find((l) => (typeof what === 'string' ? l === what : what.test(l)));
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`events: no line ${String(what)} within ${timeoutMs} ms; got:\n${this.stdout}\nstderr: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGINT, as an operator's ^C; resolves with the exit code. */
  async interrupt(): Promise<number> {
    this.child.kill('SIGINT');
    return this.exited;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

describe('events --now', () => {
  it('prints the dump of a connected pair on both nodes in drbdsetup-84 grammar and exits 0', async () => {
    const c = newCluster({ resource: 'evnow', port: 7981 });
    const r = c.resource;
    await c.admOk('alpha', ['up', r]);
    await c.admOk('beta', ['up', r]);
    await c.waitState('alpha', 'cstate', 'Connected');
    await c.admOk('alpha', ['primary', '--force', r]);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await c.waitState('alpha', 'cstate', 'Connected');
    expect(await c.admOk('alpha', ['events', '--now', r])).toBe(
      [
        `exists resource name:${r} role:Primary suspended:no`,
        `exists connection name:${r} peer-node-id:0 conn-name:peer connection:Connected role:Secondary`,
        `exists device name:${r} volume:0 minor:10 disk:UpToDate`,
        `exists peer-device name:${r} peer-node-id:0 conn-name:peer volume:0 replication:Established peer-disk:UpToDate resync-suspended:no`,
        'exists -',
        '',
      ].join('\n'),
    );
    expect(await c.admOk('beta', ['events', '--now', r])).toBe(
      [
        `exists resource name:${r} role:Secondary suspended:no`,
        `exists connection name:${r} peer-node-id:0 conn-name:peer connection:Connected role:Primary`,
        `exists device name:${r} volume:0 minor:11 disk:UpToDate`,
        `exists peer-device name:${r} peer-node-id:0 conn-name:peer volume:0 replication:Established peer-disk:UpToDate resync-suspended:no`,
        'exists -',
        '',
      ].join('\n'),
    );
    // --statistics: the device size is the agreed size, written/sent count the initial sync
    const stats = (await c.admOk('alpha', ['events', '--now', '--statistics', r])).trim().split('\n');
    expectGrammar(stats);
    const sizeKiB = (await c.statusJson('alpha')).sizeKiB as number;
    expect(stats[2]).toMatch(new RegExp(`^exists device name:${r} volume:0 minor:10 disk:UpToDate size:${sizeKiB} read:\\d+ written:\\d+ al-writes:\\d+ bm-writes:0 upper-pending:0 lower-pending:0 al-suspended:no blocked:no$`));
    const sent = Number(/ sent:(\d+)/.exec(stats[3]!)![1]);
    expect(sent).toBeGreaterThanOrEqual(sizeKiB);
    expect(stats[3]).toMatch(/ received:0 sent:\d+ out-of-sync:0 pending:0 unacked:0$/);
    // --timestamps: ISO 8601, microseconds, offset, on every line including `exists -`
    const stamped = (await c.admOk('beta', ['events', '--now', '--timestamps', r])).trim().split('\n');
    expect(stamped).toHaveLength(5);
    for (const line of stamped) expect(line).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d (exists \S+)/);
    expectGrammar(stamped);
    const stampedAt = Date.parse(stamped[0]!.split(' ')[0]!);
    expect(Math.abs(Date.now() - stampedAt)).toBeLessThan(60_000);
  });
});

describe('events stream', () => {
  it('follows connect, primary, a resync with --statistics, handlers, a disconnect and a down; --timestamps stamps the same lines', async () => {
    const c = newCluster({
      resource: 'evpair',
      port: 7983,
      diskSizeBytes: 64 * MiB,
      handlers: { 'before-resync-target': 'true', 'after-resync-target': 'exit 3' },
    });
    const r = c.resource;
    await c.admOk('alpha', ['up', r]);
    const alpha = new EventsProcess(c, 'alpha', ['--statistics', r]);
    await alpha.waitLine('exists -');
    const stamped = new EventsProcess(c, 'alpha', ['--timestamps', r]);
    await stamped.waitLine(/ exists -$/);
    await c.admOk('beta', ['up', r]);
    const beta = new EventsProcess(c, 'beta', [r]);
    await beta.waitLine('exists -');
    await c.waitState('alpha', 'cstate', 'Connected');
    await alpha.waitLine(new RegExp(`^change peer-device name:${r} peer-node-id:0 conn-name:peer volume:0 .*replication:Established`));
    expect(alpha.lines()).toContainEqual(expect.stringMatching(new RegExp(`^change connection name:${r} peer-node-id:0 conn-name:peer (connection:Connected role:Secondary|connection:Connected|role:Secondary)( congested:no)?$`)));

    await c.admOk('alpha', ['primary', '--force', r]);
    await alpha.waitLine(new RegExp(`^change resource name:${r} role:Primary`));
    const syncStart = await alpha.waitLine(new RegExp(`^change peer-device name:${r} .*replication:SyncSource`));
    expect(Number(/ out-of-sync:(\d+)/.exec(syncStart)![1])).toBeGreaterThan(0);
    await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
    await alpha.waitLine(new RegExp(`^change peer-device name:${r} peer-node-id:0 conn-name:peer volume:0 replication:Established peer-disk:UpToDate received:0 sent:\\d+ out-of-sync:0 pending:\\d+ unacked:\\d+$`));
    // the SyncTarget ran its handlers: call/response with the device key and the wait status
    await beta.waitLine(`call helper name:${r} peer-node-id:0 conn-name:peer volume:0 minor:11 helper:before-resync-target`);
    await beta.waitLine(`response helper name:${r} peer-node-id:0 conn-name:peer volume:0 minor:11 helper:before-resync-target status:0`);
    await beta.waitLine(`response helper name:${r} peer-node-id:0 conn-name:peer volume:0 minor:11 helper:after-resync-target status:768`);
    await beta.waitLine(new RegExp(`^change peer-device name:${r} .*replication:SyncTarget`));
    await beta.waitLine(`change device name:${r} volume:0 minor:11 disk:UpToDate`);

    // the peer goes away: beta's stream sees the connection lost, alpha's the disconnect and destroy
    await c.admOk('alpha', ['disconnect', r]);
    await alpha.waitLine(`destroy connection name:${r} peer-node-id:0 conn-name:peer`);
    await beta.waitLine(new RegExp(`^change connection name:${r} peer-node-id:0 conn-name:peer connection:Connecting`));
    const afterDisconnect = alpha.lines();
    const destroyAt = afterDisconnect.indexOf(`destroy connection name:${r} peer-node-id:0 conn-name:peer`);
    expect(afterDisconnect[destroyAt - 1]).toBe(`destroy peer-device name:${r} peer-node-id:0 conn-name:peer volume:0`);
    expect(afterDisconnect.some((l) => l.startsWith(`change connection name:${r} peer-node-id:0 conn-name:peer connection:StandAlone`))).toBe(true);

    await c.admOk('alpha', ['down', r]);
    await alpha.waitLine(`destroy resource name:${r}`);
    const all = alpha.lines();
    expect(all.slice(-2)).toEqual([`destroy device name:${r} volume:0 minor:10`, `destroy resource name:${r}`]);
    expect(all).toContain(`change resource name:${r} role:Secondary`);
    expect(await alpha.interrupt()).toBe(0);
    expect(await beta.interrupt()).toBe(0);
    await stamped.waitLine(new RegExp(` destroy resource name:${r}$`));
    expect(await stamped.interrupt()).toBe(0);
    // --timestamps: the same lines as without statistics, each behind an ISO 8601 time that never goes back
    const stampedLines = stamped.lines();
    expectGrammar(stampedLines);
    const times = stampedLines.map((l) => /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})([+-]\d\d:\d\d) /.exec(l));
    expect(times.every((m) => m !== null)).toBe(true);
    const micros = times.map((m) => Date.parse(`${m![1]}${m![3]}`) * 1000 + Number(m![2]));
    for (let i = 1; i < micros.length; i++) expect(micros[i]).toBeGreaterThanOrEqual(micros[i - 1]!);
    expect(stampedLines.map((l) => l.slice(l.indexOf(' ') + 1)).filter((l) => !l.startsWith('exists'))).toEqual(
      alpha.lines().filter((l) => !l.startsWith('exists')).map((l) => l.replace(/ (write-ordering|congested|size|received):.*$/, '')),
    );
    expectGrammar(alpha.lines());
    expectGrammar(beta.lines());
    // drbdsetup-84 events2 prints no `done:` (8.4's peer-device statistics have no resync totals)
    expect(alpha.lines().some((l) => l.includes(' done:'))).toBe(false);
    expect(beta.lines().filter((l) => l === 'exists -')).toHaveLength(1);
  });
});

describe('events for all resources', () => {
  it('merges one stream per resource process, one exists -, create lines when a resource comes up, destroy when it goes down, nothing when it is killed', async () => {
    const a = newCluster({ resource: 'evallA', port: 7985 });
    const b = newCluster({ resource: 'evallB', port: 7987 });
    // one config with both resources (B on other minors) and one runtime dir, as on a real node
    const combined = path.join(a.dir, 'both.conf');
    fs.writeFileSync(combined, a.configText() + b.configText().replace(/drbd10 minor 10/, 'drbd20 minor 20').replace(/drbd11 minor 11/, 'drbd21 minor 21'));
    for (const c of [a, b]) {
      c.configPaths.alpha = combined;
      c.configPaths.beta = combined;
    }
    b.env.UDRBD_RUN_DIR = a.env.UDRBD_RUN_DIR;
    b.env.UDRBD_LOG_DIR = a.env.UDRBD_LOG_DIR;

    // a resource that is not up contributes nothing: only `exists -`
    expect(await a.admOk('alpha', ['events', '--now', 'evallB'])).toBe('exists -\n');

    await a.admOk('alpha', ['up', 'evallA']);
    await a.waitState('alpha', 'cstate', 'WFConnection');
    const stream = new EventsProcess(a, 'alpha', [], combined);
    await stream.waitLine('exists -');
    expect(stream.lines()).toEqual([
      'exists resource name:evallA role:Secondary suspended:no',
      'exists connection name:evallA peer-node-id:0 conn-name:peer connection:Connecting role:Unknown',
      'exists device name:evallA volume:0 minor:10 disk:Inconsistent',
      'exists peer-device name:evallA peer-node-id:0 conn-name:peer volume:0 replication:WFConnection peer-disk:DUnknown resync-suspended:no',
      'exists -',
    ]);

    await b.admOk('alpha', ['up', 'evallB']);
    await stream.waitLine(/^create peer-device name:evallB /);
    const created = stream.lines().filter((l) => l.includes('name:evallB'));
    expect(created[0]).toBe('create resource name:evallB role:Secondary suspended:no');
    expect(created[1]).toBe('create device name:evallB volume:0 minor:20 disk:Inconsistent');
    expect(created[2]).toMatch(/^create connection name:evallB peer-node-id:0 (conn-name:peer )?connection:\S+ role:Unknown$/);

    // both up: one dump, in configuration order, one `exists -`
    const now = (await a.admOk('alpha', ['events', '--now'], 20_000)).trim().split('\n');
    expect(now.map((l) => l.split(' ').slice(0, 3).join(' '))).toEqual([
      'exists resource name:evallA',
      'exists connection name:evallA',
      'exists device name:evallA',
      'exists peer-device name:evallA',
      'exists resource name:evallB',
      'exists connection name:evallB',
      'exists device name:evallB',
      'exists peer-device name:evallB',
      'exists -',
    ]);
    expectGrammar(now);

    await b.admOk('alpha', ['down', 'evallB']);
    await stream.waitLine('destroy resource name:evallB');
    expect(stream.lines().slice(-2)).toEqual(['destroy device name:evallB volume:0 minor:20', 'destroy resource name:evallB']);
    // a killed process sends no destroy lines; when it is up again its objects are new: create lines with every field
    await b.admOk('alpha', ['up', 'evallB']);
    await b.waitFor('evallB back in the stream', () => stream.lines().filter((l) => l === 'create resource name:evallB role:Secondary suspended:no').length === 2, 20_000);
    await b.waitFor('evallB peer-device created again', () => stream.lines().filter((l) => l.startsWith('create peer-device name:evallB')).length === 2, 20_000);
    const beforeKill = stream.lines().length;
    b.kill9('alpha');
    await b.waitGone('alpha');
    await new Promise((r) => setTimeout(r, 1_500));
    expect(stream.lines().length).toBe(beforeKill);
    await b.admOk('alpha', ['up', 'evallB']);
    await b.waitFor('evallB created a third time', () => stream.lines().filter((l) => l.startsWith('create device name:evallB volume:0 minor:20 disk:')).length === 3, 20_000).catch((err: Error) => {
      throw new Error(`${err.message}; stream:\n${stream.lines().join('\n')}\nstderr: ${stream.stderr}`);
    });
    // the other resource's stream goes on
    await a.admOk('alpha', ['disconnect', 'evallA']);
    await stream.waitLine('destroy connection name:evallA peer-node-id:0 conn-name:peer');
    expect(await stream.interrupt()).toBe(0);
    expectGrammar(stream.lines());
    expect(stream.lines().filter((l) => l === 'exists -')).toHaveLength(1);
  });
});
