/**
 * daemon/link — the connection side of a resource process (DRBD 8.4's
 * drbd_tconn): runs the PeerConnector (peer/) while the resource is not
 * StandAlone, sends what is per connection (P_PROTOCOL and its update,
 * discard-my-data, the split-brain count), and on every established link
 * hands each volume's side of it (daemon/volume-link) its connect sequence,
 * side by side. Connecting, disconnecting, dropping the connection for a
 * volume's refusal and the loss of the link change the connection's state
 * once, on every volume (ResourceRuntime.setConnState: DRBD's
 * conn_request_state). The connection states come from resource/admin
 * (connect, disconnect) and resource/link-rules (lost link, StandAlone).
 */
import { ExitCode } from '../util/errors.js';
import { ConnState, Role } from '../resource/states.js';
import { type Refusal, SsCode, refusal } from '../resource/state.js';
import { type AdminResult, requestConnect, requestDisconnect } from '../resource/admin.js';
import { assert } from '../util/assert.js';
import { linkLostStates, standAloneStates } from '../resource/link-rules.js';
import { PeerConnector, integrityDigest, type HandshakeResult, type LocalParams } from '../peer/index.js';
import type { LinkLossReason } from '../peer/channel.js';
import { runAside } from '../util/aside.js';
import { PacketType, type ProtocolPacket, type SyncParamPacket } from '../peer/packets.js';
import type { ReplicationEngine } from '../replication/index.js';
import type { ResourceView } from '../config/index.js';
import { type ResourceRuntime, StateChangeRefused } from './runtime.js';
import { SplitBrainCount } from './metrics-source.js';
import { listenFailureError } from './listen-failure.js';
import { VolumeLink, type VolumeLinkConnection } from './volume-link.js';
import { LinkMux } from '../peer/link-mux.js';
import { newLinkEpochs } from '../replication/index.js';

/** The first listen of a connect is normally answered at once; past this the connect goes on retrying. */
const FIRST_LISTEN_WAIT_MS = 5_000;

/** Resolves with the first listen's error, or undefined once it listens (or the wait ends). */
function firstListenOutcome(connector: PeerConnector): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const done = (err: NodeJS.ErrnoException | undefined): void => {
      clearTimeout(timer);
      connector.off('listening', onListening);
      connector.off('listen-failed', onFailed);
      resolve(err);
    };
    const onListening = (): void => done(undefined);
    const onFailed = (err: NodeJS.ErrnoException): void => done(err);
    const timer = setTimeout(() => done(undefined), FIRST_LISTEN_WAIT_MS);
    connector.on('listening', onListening);
    connector.on('listen-failed', onFailed);
  });
}


export class PeerLink implements VolumeLinkConnection {
  private connector: PeerConnector | undefined;
  /** The established connection, from its parameter exchange until it is lost or closed. */
  private current: HandshakeResult | undefined;
  /** One-shot `--discard-my-data` for the next handshake. */
  discardMyData = false;
  /** Split brains the handshakes found (metrics). */
  readonly splitBrains = new SplitBrainCount();
  /** The volumes on this connection by number (DRBD's tconn->volumes), added by daemon/wiring. */
  private readonly volumes = new Map<number, VolumeLink>();

  constructor(private readonly runtime: ResourceRuntime) {}

  /** Adds volume `vnr`'s side of the link; `engine` is its data path (undefined until attached or connected diskless). */
  addVolume(vnr: number, engine: () => ReplicationEngine | undefined): VolumeLink {
    assert(!this.volumes.has(vnr), `volume ${vnr} is on the link once`);
    const volume = new VolumeLink(this.runtime, this, vnr, engine);
    this.volumes.set(vnr, volume);
    return volume;
  }

  /** Volume `vnr`'s side of the link. */
  volume(vnr: number): VolumeLink {
    const volume = this.volumes.get(vnr);
    assert(volume !== undefined, `volume ${vnr} is on the link`);
    return volume;
  }

  /** The first volume's side (the only one of a one-volume resource). */
  get first(): VolumeLink {
    return this.volume(this.runtime.firstVolume);
  }

  private get view(): ResourceView {
    return this.runtime.spec.view as ResourceView;
  }

  /** The volumes configured locally, for the frame decoder (DRBD's tconn->volumes). */
  private configuredVolumes(): ReadonlySet<number> {
    return new Set(this.volumes.keys());
  }

  get isRunning(): boolean {
    return this.connector !== undefined;
  }

  // ---- admin ------------------------------------------------------------------------------------

  async connect(discardMyData: boolean): Promise<void> {
    const rt = this.runtime;
    if (this.connector) {
      // Already connecting: udrbd takes a later --discard-my-data for the next handshake.
      if (discardMyData && rt.snapshot.role === Role.Primary) refuse(refusalOf(requestConnect(rt.snapshot, { discardMyData }, rt.stateCtx())));
      if (discardMyData) this.discardMyData = true;
      return;
    }
    const spec = rt.spec;
    if (!spec.peer || !spec.localAddress) {
      throw new StateChangeRefused(SsCode.noNetConfig, refusal(SsCode.noNetConfig).text, ExitCode.stateChangeFailed);
    }
    // resource/admin: --discard-my-data on a Primary (123), a net config already there (125).
    const fencing = rt.attachedStore ? this.view.disk.fencing : 'dont-care';
    const plan = requestConnect(rt.snapshot, { discardMyData, net: { ...this.view.net, fencing } }, rt.stateCtx());
    if (plan.kind !== 'ok') refuse(refusalOf(plan));
    const [unconnected, waiting] = plan.states;
    assert(unconnected !== undefined && waiting !== undefined, 'connect is StandAlone → Unconnected → WFConnection');
    const net = this.view.net;
    // drbd_adm_connect → alloc_crypto: an unknown data-integrity-alg refuses the connect (ERR_INTEGRITY_ALG).
    integrityDigest(net.dataIntegrityAlg ?? '');
    this.discardMyData = discardMyData;
    const connector = new PeerConnector({
      localAddress: { host: spec.localAddress.host, port: spec.localAddress.port },
      peerAddress: { host: spec.peer.address.host, port: spec.peer.address.port },
      nodeName: spec.node,
      peerNodeName: spec.peer.name,
      ...(net.cramHmacAlg && net.sharedSecret ? { auth: { alg: net.cramHmacAlg, secret: net.sharedSecret } } : {}),
      connectIntervalMs: net.connectIntervalMs,
      pingIntervalMs: net.pingIntervalMs,
      pingTimeoutMs: net.pingTimeoutMs,
      timeoutMs: net.timeoutMs,
      koCount: net.koCount,
      socketBuffers: { sndbufSizeBytes: net.sndbufSizeBytes, rcvbufSizeBytes: net.rcvbufSizeBytes },
      volumes: this.configuredVolumes(),
      logger: rt.log,
    });
    this.connector = connector;
    connector.on('connected', (result: HandshakeResult) => {
      this.onConnected(result).catch((err: Error) => {
        rt.log.error({ err }, `connect sequence failed: ${err.message}`);
        result.session.close('ProtocolError');
      });
    });
    connector.on('incompatible', (message: string) => {
      rt.log.error(message);
      // An event callback cannot wait; toStandAlone's failure is logged.
      runAside(this.toStandAlone('incompatible settings'), rt.log, 'disconnect after incompatible settings');
    });
    const firstListen = firstListenOutcome(connector);
    await rt.setConnState({ conn: unconnected.conn }, 'connect');
    connector.start(() => this.localParams());
    await rt.setConnState({ conn: waiting.conn }, 'connect');
    // A local address that cannot be bound is the operator's error, not the network's: report it, StandAlone.
    const listenError = await firstListen;
    if (listenError && this.connector === connector) {
      await this.disconnect();
      throw listenFailureError(listenError, { resource: spec.name, host: spec.localAddress.host, port: spec.localAddress.port, configPath: spec.configPath });
    }
  }



  /** `adjust` (net-options): the connector and the live session take the spec's current net options. */
  applyNetOptions(): void {
    const net = this.view.net;
    this.connector?.updateOptions({
      connectIntervalMs: net.connectIntervalMs,
      pingIntervalMs: net.pingIntervalMs,
      pingTimeoutMs: net.pingTimeoutMs,
      timeoutMs: net.timeoutMs,
      koCount: net.koCount,
      ...(net.cramHmacAlg && net.sharedSecret ? { auth: { alg: net.cramHmacAlg, secret: net.sharedSecret } } : {}),
    });
  }

  /**
   * After net-options on a live connection: tell the peer the protocol and
   * split-brain policies (DRBD's P_PROTOCOL_UPDATE, protocol version ≥ 100).
   */
  sendProtocolUpdate(): void {
    const result = this.current;
    if (!result) return;
    const net = this.view.net;
    result.session.send({
      type: PacketType.ProtocolUpdate,
      protocol: net.protocol,
      afterSb0pri: net.afterSb0pri,
      afterSb1pri: net.afterSb1pri,
      afterSb2pri: net.afterSb2pri,
      allowTwoPrimaries: net.allowTwoPrimaries,
      discardMyData: false,
      nodeName: this.runtime.spec.node,
      // 8.4 drbd_adm_net_opts: the new integrity_tfm sends from this packet on; the peer switches on receipt.
      integrityAlg: net.dataIntegrityAlg ?? '',
    });
  }



  /** Set by daemon/adjust: the peer changed its protocol on the live connection; this node adopts it. */
  onPeerProtocolUpdate: ((packet: ProtocolPacket) => void) | undefined;

  /** After disk-options / net-options on a live connection: every volume's resync parameters to the peer (DRBD's P_SYNC_PARAM). */
  sendSyncParam(): void {
    for (const volume of this.volumes.values()) volume.sendSyncParam();
  }

  /** Set by daemon/adjust: the peer sent new resync parameters; this node adopts them. */
  onPeerSyncParam: ((packet: SyncParamPacket) => void) | undefined;
  /** Runs just before a resync starts (daemon/resync-after: the dependency's state, fresh). */
  beforeResync: (() => Promise<void>) | undefined;

  /** A resync is running on some volume of this link (either direction). */
  get resyncRunning(): boolean {
    return [...this.volumes.values()].some((v) => v.resyncRunning);
  }

  /** `disconnect` / `down`: close the link and go StandAlone. */
  async disconnect(): Promise<void> {
    const rt = this.runtime;
    if (!this.connector) return;
    // resource/admin's rules for `disconnect` (a Primary with fencing retries with the peer Outdated).
    const plan = rt.snapshot.conn === ConnState.Disconnecting ? undefined : requestDisconnect(rt.snapshot, rt.stateCtx());
    if (plan && plan.kind !== 'ok') refuse(refusalOf(plan));
    const connector = this.connector;
    this.connector = undefined;
    const [disconnecting] = plan?.states ?? [];
    if (disconnecting) await rt.setConnState({ conn: disconnecting.conn, pdsk: disconnecting.pdsk }, 'disconnect');
    this.current = undefined;
    for (const volume of this.volumes.values()) volume.dropLink();
    await connector.stop();
    for (const conn of standAloneStates(rt.snapshot)) await rt.setConnState({ conn }, 'disconnect');
  }

  /** Drops the connection and goes StandAlone (a refused handshake, incompatible settings, on-congestion disconnect). */
  async toStandAlone(why: string): Promise<void> {
    const rt = this.runtime;
    const connector = this.connector;
    this.connector = undefined;
    this.current = undefined;
    for (const volume of this.volumes.values()) volume.dropLink();
    const [first, ...rest] = standAloneStates(rt.snapshot);
    if (first === ConnState.Disconnecting) await rt.setConnState({ conn: first }, why);
    for (const volume of this.volumes.values()) volume.dropLink(true);
    await connector?.stop();
    rt.log.info('Connection closed');
    for (const conn of first === ConnState.Disconnecting ? rest : [first, ...rest]) {
      if (conn !== undefined) await rt.setConnState({ conn }, why);
    }
  }

  // ---- the connect sequence -------------------------------------------------------------------

  private localParams(): LocalParams {
    const net = this.view.net;
    return {
      protocol: {
        protocol: net.protocol,
        afterSb0pri: net.afterSb0pri,
        afterSb1pri: net.afterSb1pri,
        afterSb2pri: net.afterSb2pri,
        allowTwoPrimaries: net.allowTwoPrimaries,
        discardMyData: this.discardMyData,
        nodeName: this.runtime.spec.node,
        integrityAlg: net.dataIntegrityAlg ?? '',
      },
      volumes: [...this.volumes.entries()].sort(([a], [b]) => a - b).map(([, v]) => v.localVolumeParams()),
    };
  }

  /** An established connection: every volume's connect sequence, side by side (each may go on into a resync). */
  private async onConnected(result: HandshakeResult): Promise<void> {
    this.current = result;
    // One connection for every volume: each gets its own channel on it, all share the epoch stream.
    const mux = new LinkMux(result.session, this.volumes.keys(), this.runtime.log);
    const epochs = newLinkEpochs(result.session);
    await Promise.all([...this.volumes.values()].map((volume) => volume.onConnected(result, { channel: mux.channel(volume.vnr), epochs })));
  }

  /** The established connection `result` was lost (reported by a volume's data path): the connection's states, once. */
  async linkLost(result: HandshakeResult, reason: LinkLossReason): Promise<void> {
    if (this.current !== result) return;
    this.current = undefined;
    for (const volume of this.volumes.values()) volume.linkGone(result);
    const rt = this.runtime;
    rt.log.warn(`peer link lost: ${reason}`);
    // The lost-peer-data rule (a Primary starts a new data generation) runs inside the transition.
    const [lost, ...reconnect] = linkLostStates(reason, true);
    await rt.setConnState({ conn: lost }, 'link lost');
    if (!this.connector) return;
    for (const conn of reconnect) await rt.setConnState({ conn }, 'reconnecting');
  }

  get protocol(): 'A' | 'B' | 'C' | undefined {
    return this.connector ? this.view.net.protocol : undefined;
  }
}

/** Throws a resource/admin refusal as the control protocol reports it. */
function refuse(r: Refusal): never {
  throw new StateChangeRefused(r.code, r.text, r.exitCode);
}

function refusalOf(result: AdminResult): Refusal {
  assert(result.kind === 'refused', 'a refused admin result');
  return result.refusal;
}
