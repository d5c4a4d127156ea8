/**
 * resource — the DRBD 8.4 resource state machine as pure data + functions,
 * the only copy of its rules. Knows nothing of sockets, disks, byte
 * formats, timers or the clock.
 *
 *   states.ts     roles, connection and disk states with DRBD's names
 *   state.ts      ConnectionState (per resource) and VolumeState (per volume),
 *                 the state word of the pair (joinState / volumeOf / connectionOf),
 *                 sanitizeState, is_valid_state / _transition / _soft_transition,
 *                 SS_* and ERR_* refusals, the log renderings
 *   transition.ts the one checked function: transition() judges one volume
 *                 (sanitize, hard and soft rules, invariants → InvariantError,
 *                 after-state rules); connectionTransition() applies a connection
 *                 change to every volume, all or none (conn_request_state)
 *   admin.ts      operator requests (primary, secondary, connect, disconnect,
 *                 detach, invalidate, verify, outdate, pause-sync, new-current-uuid)
 *                 and the net-option check of connect (on-congestion needs protocol A)
 *   link-rules.ts connection-state targets of the connect sequence and resync,
 *                 on-congestion (Ahead / Behind and back)
 *   uuid.ts       generation UUIDs: uuid_compare, syncHandshake, rotations
 *   after-sb.ts   split-brain recovery policies
 *   md-flags.ts   MDF_* flags from a state, the disk state at attach from flags
 *
 * The resource process (daemon/runtime, daemon/link, daemon/wiring) calls
 * these and commits every change through ResourceRuntime.setVolumeState
 * (transition) or setConnState (connectionTransition); test/helpers/rule-pair drives the same rules
 * for two nodes without sockets.
 */
export * from './states.js';
export * from './state.js';
export * from './uuid.js';
export * from './after-sb.js';
export * from './admin.js';
export * from './md-flags.js';
export * from './transition.js';
export * from './link-rules.js';
