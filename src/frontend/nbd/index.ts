/**
 * frontend/nbd — the NBD export of a BlockDevice. Public surface for the
 * daemon: NbdServer (listenUnix / listenTcp / close), the loopback-only TCP
 * address parser, and, for tests and
 * status, the wire constants. The kernel attach lives in ../nbd-client.
 */
export { NbdServer, exportConfigFor, type NbdServerOptions } from './server.js';
export * as nbdProtocol from './protocol.js';
export { parseNbdTcpAddress, isLoopbackAddress, assertLoopbackHost, type NbdTcpAddress } from './tcp-address.js';
