/**
 * replication/ — the data path: mirrored writes (protocols A/B/C), epochs and
 * barriers, the peer-side receiver, bitmap exchange, resync and online verify,
 * and the congestion check that pulls ahead (on-congestion, volume.ts).
 * Public surface for daemon/ and tests; see engine.ts for the wiring.
 */
export { ReplicationEngine, type ReplicationEngineDeps, type DisklessEngineDeps, type AttachedPeer, type LiveReplicationOptions } from './engine.js';
export type { DisklessShape } from './local-disk.js';
export { ReplicatedVolume, type CongestionHandler, type OnDemandSync, setOutOfSync, setInSync } from './volume.js';
export { SecondaryReceiver } from './receiver.js';
export { SenderEpochs, ReceiverEpochs, type LinkEpochs, newLinkEpochs } from './epochs.js';
export { ResyncTarget, ResyncResponder, type ResyncProgress, type ResyncResult, syncPerMille } from './resync.js';
export { VerifySource, VerifyResponder, type VerifyResult } from './verify.js';
export { BitmapExchange } from './bitmap-exchange.js';
export { ReplicationCounters, type CounterSnapshot } from './counters.js';
export { type ReplicationOptions, type OnCongestion, SECTOR_BYTES, defaultReplicationOptions, withDefaults, resyncRateLimitKiBps, resyncControllerSettings, requestTimeoutMs } from './options.js';
export { blockDigest, crc32c } from '../util/digest.js';
