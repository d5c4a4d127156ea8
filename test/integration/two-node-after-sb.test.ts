/**
 * Issue 4 acceptance: every after-sb-0pri/1pri/2pri policy, each in the
 * situation it governs. A synced pair (alpha Primary) is split by cutting the
 * proxied link, beta is promoted, both write, the Primaries named by the test
 * stay Primary, the link is restored; the policy then either names a victim
 * (it becomes SyncTarget and ends with the survivor's data) or leaves the
 * split brain unresolved (both StandAlone).
 */
import crypto from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, type NodeName } from '../helpers/cluster.js';

const MiB = 1024 * 1024;
let cluster: Cluster | undefined;

afterEach(async () => {
  await cluster?.destroy();
  cluster = undefined;
});

interface Scenario {
  name: string;
  net: string[];
  netPerNode?: Partial<Record<NodeName, string[]>>;
  /** MiB written on each node while split. */
  alphaMiB: number;
  betaMiB: number;
  /** Nodes still Primary when the link comes back. */
  primaries: NodeName[];
  /** Whose data is discarded, or 'unresolved'. */
  victim: NodeName | 'unresolved';
  /** For unresolved cases that are not "split brain unresolved": the line alpha logs instead. */
  logOnAlpha?: string;
  /** A line beta must log as well in that case. */
  logOnBeta?: string;
}

const scenarios: Scenario[] = [
  // zero primaries at reconnect
  { name: 'after-sb-0pri discard-zero-changes: the node without changes is discarded', net: ['after-sb-0pri discard-zero-changes;'], alphaMiB: 0, betaMiB: 2, primaries: [], victim: 'alpha' },
  { name: 'after-sb-0pri discard-zero-changes: both changed → unresolved', net: ['after-sb-0pri discard-zero-changes;'], alphaMiB: 1, betaMiB: 1, primaries: [], victim: 'unresolved' },
  { name: 'after-sb-0pri discard-least-changes: fewer changed blocks are discarded', net: ['after-sb-0pri discard-least-changes;'], alphaMiB: 3, betaMiB: 1, primaries: [], victim: 'beta' },
  { name: 'after-sb-0pri discard-younger-primary: the node promoted after the split is discarded', net: ['after-sb-0pri discard-younger-primary;'], alphaMiB: 1, betaMiB: 1, primaries: [], victim: 'beta' },
  { name: 'after-sb-0pri discard-older-primary: the node that was Primary at the split is discarded', net: ['after-sb-0pri discard-older-primary;'], alphaMiB: 1, betaMiB: 1, primaries: [], victim: 'alpha' },
  { name: 'after-sb-0pri discard-node-alpha: the named node is discarded', net: ['after-sb-0pri discard-node-alpha;'], alphaMiB: 1, betaMiB: 2, primaries: [], victim: 'alpha' },
  {
    name: 'after-sb-0pri discard-local (beta) / discard-remote (alpha): beta is discarded',
    net: [],
    netPerNode: { alpha: ['after-sb-0pri discard-remote;'], beta: ['after-sb-0pri discard-local;'] },
    alphaMiB: 1,
    betaMiB: 2,
    primaries: [],
    victim: 'beta',
  },
  { name: 'after-sb-0pri disconnect (default): unresolved', net: [], alphaMiB: 1, betaMiB: 1, primaries: [], victim: 'unresolved' },
  // one Primary at reconnect (alpha)
  { name: 'after-sb-1pri discard-secondary: the Secondary is discarded', net: ['after-sb-1pri discard-secondary;'], alphaMiB: 1, betaMiB: 2, primaries: ['alpha'], victim: 'beta' },
  {
    name: 'after-sb-1pri consensus: applies the 0pri result when it discards the Secondary',
    net: ['after-sb-0pri discard-least-changes;', 'after-sb-1pri consensus;'],
    alphaMiB: 3,
    betaMiB: 1,
    primaries: ['alpha'],
    victim: 'beta',
  },
  {
    name: 'after-sb-1pri consensus: refuses when the 0pri result would discard the Primary',
    net: ['after-sb-0pri discard-least-changes;', 'after-sb-1pri consensus;'],
    alphaMiB: 1,
    betaMiB: 3,
    primaries: ['alpha'],
    victim: 'unresolved',
  },
  {
    name: "after-sb-1pri violently-as0p (with rr-conflict violently): applies the 0pri result even against the Primary's data",
    net: ['after-sb-0pri discard-least-changes;', 'after-sb-1pri violently-as0p;', 'rr-conflict violently;'],
    alphaMiB: 1,
    betaMiB: 3,
    primaries: ['alpha'],
    victim: 'alpha',
  },
  {
    name: 'after-sb-1pri call-pri-lost-after-sb: the Primary named by the 0pri result gives up its role and is discarded',
    net: ['after-sb-0pri discard-least-changes;', 'after-sb-1pri call-pri-lost-after-sb;'],
    alphaMiB: 1,
    betaMiB: 3,
    primaries: ['alpha'],
    victim: 'alpha',
  },
  {
    name: 'after-sb-1pri violently-as0p with rr-conflict disconnect: a Primary refuses to become SyncTarget',
    net: ['after-sb-0pri discard-least-changes;', 'after-sb-1pri violently-as0p;'],
    alphaMiB: 1,
    betaMiB: 3,
    primaries: ['alpha'],
    victim: 'unresolved',
    logOnAlpha: 'I shall become SyncTarget, but I am primary!',
  },
  { name: 'after-sb-1pri disconnect (default): unresolved', net: [], alphaMiB: 1, betaMiB: 1, primaries: ['alpha'], victim: 'unresolved' },
  // two Primaries at reconnect
  {
    // The loser gives up its role (drbd_asb_recover_2p), but the survivor's receive_state still saw
    // it Primary in its P_STATE: is_valid_state refuses two Primaries without allow-two-primaries.
    name: 'after-sb-2pri call-pri-lost-after-sb: the losing Primary gives up its role; the survivor refuses two Primaries (-1)',
    net: ['after-sb-0pri discard-least-changes;', 'after-sb-2pri call-pri-lost-after-sb;'],
    alphaMiB: 3,
    betaMiB: 1,
    primaries: ['alpha', 'beta'],
    victim: 'unresolved',
    logOnAlpha: 'State change failed: Multiple primaries not allowed by config',
    logOnBeta: 'Successfully gave up primary role.',
  },
  {
    // drbd_receiver.c receive_state: the first state after the handshake is not CS_HARD, so
    // is_valid_state refuses two Primaries (-1) and the connection is dropped.
    name: 'after-sb-2pri violently-as0p without allow-two-primaries: the resync state is refused, StandAlone',
    net: ['after-sb-0pri discard-least-changes;', 'after-sb-2pri violently-as0p;', 'rr-conflict violently;'],
    alphaMiB: 3,
    betaMiB: 1,
    primaries: ['alpha', 'beta'],
    victim: 'unresolved',
    logOnAlpha: 'State change failed: Multiple primaries not allowed by config',
  },
  { name: 'after-sb-2pri disconnect (default): unresolved', net: [], alphaMiB: 1, betaMiB: 1, primaries: ['alpha', 'beta'], victim: 'unresolved' },
];

async function writeMiB(c: Cluster, node: NodeName, offsetBytes: number, mib: number): Promise<void> {
  for (let i = 0; i < mib; i++) await c.write(node, offsetBytes + i * MiB, crypto.randomBytes(MiB));
}

describe('after-sb policies', () => {
  let port = 7760;
  for (const sc of scenarios) {
    const myPort = port++;
    it(sc.name, async () => {
      cluster = new Cluster({ port: myPort, proxy: true, net: sc.net, ...(sc.netPerNode ? { netPerNode: sc.netPerNode } : {}) });
      const c = cluster;
      const r = c.resource;
      await c.startProxies();
      await c.admOk('alpha', ['up', r]);
      await c.admOk('beta', ['up', r]);
      await c.waitState('alpha', 'cstate', 'Connected');
      await c.admOk('alpha', ['primary', '--force', r]);
      await c.waitState('beta', 'dstate', 'UpToDate/UpToDate', 60_000);
      await c.waitState('alpha', 'cstate', 'Connected');
      // split
      c.cut();
      await c.waitState('alpha', 'cstate', /^(WFConnection|Unconnected)$/);
      await c.waitState('beta', 'cstate', /^(WFConnection|Unconnected)$/);
      await c.admOk('beta', ['primary', r]);
      await writeMiB(c, 'alpha', 4 * MiB, sc.alphaMiB);
      await writeMiB(c, 'beta', 20 * MiB, sc.betaMiB);
      for (const node of ['alpha', 'beta'] as const) {
        if (!sc.primaries.includes(node)) await c.admOk(node, ['secondary', r]);
      }
      c.restore();
      if (sc.victim === 'unresolved') {
        await c.waitState('alpha', 'cstate', 'StandAlone');
        if (sc.logOnAlpha) {
          expect(c.logText('alpha')).toContain(sc.logOnAlpha);
          if (sc.logOnBeta) await c.waitFor(`beta logs ${sc.logOnBeta}`, () => c.logText('beta').includes(sc.logOnBeta ?? ''));
        } else {
          await c.waitState('beta', 'cstate', 'StandAlone');
          for (const node of ['alpha', 'beta'] as const) {
            expect(c.logText(node)).toContain('Split-Brain detected but unresolved, dropping connection!');
          }
        }
        expect(c.hashDataArea('alpha')).not.toBe(c.hashDataArea('beta'));
        return;
      }
      const survivor: NodeName = sc.victim === 'alpha' ? 'beta' : 'alpha';
      const survivorHash = c.hashDataArea(survivor);
      await c.waitState(sc.victim, 'dstate', 'UpToDate/UpToDate', 60_000);
      await c.waitState(survivor, 'dstate', 'UpToDate/UpToDate', 60_000);
      await c.waitState(survivor, 'cstate', 'Connected');
      expect(c.logText(sc.victim)).toMatch(/Split-Brain detected, \d primaries, automatically solved\. Sync from peer node/);
      expect(c.logText(survivor)).toMatch(/Split-Brain detected, \d primaries, automatically solved\. Sync from this node/);
      expect(c.logText(sc.victim)).toContain('conn( WFSyncUUID -> SyncTarget )');
      expect(c.hashDataArea(sc.victim)).toBe(survivorHash);
      expect(c.hashDataArea(survivor)).toBe(survivorHash);
    });
  }
});
