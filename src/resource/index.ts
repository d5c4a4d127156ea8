/**
 * resource — the DRBD 8.4 resource state machine as pure data + functions.
 * Owns: the state word and its rules (state.ts), generation UUIDs and the
 * connect-time sync handshake (uuid.ts), split-brain policies (after-sb.ts),
 * operator requests (admin.ts) and the reducer the daemon drives (machine.ts).
 * Knows nothing of sockets, disks, byte formats, timers or the clock.
 *
 * How the daemon uses it:
 *
 *   let model = initialModel(config);                       // ResourceConfig from the parsed config
 *   const { model: next, actions } = step(model, event);     // never mutates `model`
 *   model = next; for (const a of actions) execute(a);       // in order
 *
 * Events (ResourceEvent; add `random: <u64 bigint>` to every event, and
 * optionally `selfBitsSet` = current bitmap weight):
 *   attach {uuids, mdFlags, bitsSet} · detach · primary {force} · secondary ·
 *   connect {discardMyData} · disconnect · invalidate · invalidate-remote · verify ·
 *   outdate · pause-sync · resume-sync · new-current-uuid {clearBitmap} ·
 *   device-open {open} · bits-set {count} ·
 *   net-connected {peer: PeerParams (P_PROTOCOL settings + nodeName, optionally
 *     uuids/bitsSet/uuidFlags/role/disk/conn → handshake runs at once), resolveConflicts} ·
 *   peer-uuids {uuids, bitsSet, uuidFlags} · peer-state {role, disk, conn, userIsp, aftrIsp} ·
 *   net-lost {reason: timeout|broken-pipe|network-failure|protocol-error|teardown} ·
 *   bitmap-exchanged · sync-uuid {uuid} · resync-finished {ok, failedBlocks} ·
 *   verify-finished {oosBlocks} · fence-peer-result {exitCode}
 *
 * Actions (Action), carry out in order:
 *   log {level, msg}            – kernel-log line; state changes are exactly one
 *                                 `role( A -> B ) conn( … )` line each
 *   state-change {from, to}     – for the events stream / frontends (expose on Primary)
 *   write-md {uuids, mdFlags}   – persist superblock UUIDs + flags
 *   send-uuids {uuids, bitsSet, uuidFlags} · send-sync-uuid {uuid} · send-state {state}
 *   set-all-bits · clear-all-bits                 – on the local bitmap (write it out)
 *   net-connect                 – start listening/connecting (WFConnection)
 *   drop-connection {reason, to} – close the peer link; to StandAlone = forget net config
 *   exchange-bitmap {as}        – send ours, OR in theirs, then feed `bitmap-exchanged`
 *   start-resync {as, full}     – run the resync, then feed `resync-finished`
 *   start-verify {as}           – run online verify, then feed `verify-finished`
 *   run-handler {name}          – fence-peer (then feed `fence-peer-result`),
 *                                 split-brain, initial-split-brain, pri-lost,
 *                                 pri-lost-after-sb, after-resync-target
 *   reply {ok, code, text, exitCode, stderr} – answer to an admin event; stderr is
 *                                 drbdsetup's line, e.g. `0: State change failed: (-2) Need access to UpToDate data`
 *
 * An admin event normally yields exactly one `reply`; `primary` that needs
 * fence-peer yields `run-handler fence-peer` and the reply comes with the
 * `fence-peer-result` event.
 *
 * Lower-level pure functions are exported too: sanitizeState, checkStateChange,
 * formatStateChange, formatStateLine, uuidCompare, syncHandshake, the UUID
 * rotation helpers, the after-sb recover functions and requestXxx admin checks.
 */
export * from './states.js';
export * from './state.js';
export * from './uuid.js';
export * from './after-sb.js';
export * from './admin.js';
export * from './md-flags.js';
export * from './transition.js';
export * from './link-rules.js';
