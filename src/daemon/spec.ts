/**
 * daemon/spec — the resource process's configuration: the fields daemon/
 * uses directly (names, minor, disks, addresses, handlers, fencing, sizes,
 * drbdsetup argument lists), built by config-adapter.ts from config/'s
 * ResourceView for this node. `view` carries that whole ResourceView as
 * `unknown`: link, wiring, adjust, adjust-plan and metrics-source cast it back
 * to read net/disk options, so a change in the config layer can reach them too.
 */

export interface AddressSpec {
  family: string;
  host: string;
  port: number;
}

export interface ResourceSpec {
  name: string;
  node: string;
  configPath: string;
  minor: number;
  volume: number;
  devicePath: string;
  diskPath: string;
  /** `internal`, or the external meta device and its slot (`flexible`: the whole device). */
  metaDisk: 'internal' | { path: string; index: number | 'flexible' };
  /** The meta device and the index words drbdmeta (`flex-external`) and drbdsetup-84 attach (`flexible`) take. */
  metaArgs: { device: string; drbdmetaIndex: string; attachIndex: string };
  localAddress: AddressSpec | undefined;
  peer: { name: string; address: AddressSpec } | undefined;
  handlers: Record<string, string>;
  /** disk { fencing } */
  fencing: 'dont-care' | 'resource-only' | 'resource-and-stonith';
  /** disk { al-extents } */
  alExtents: number;
  /** disk { disk-barrier disk-flushes disk-drain md-flushes al-updates } (DRBD's defaults: no, yes, yes, yes, yes). */
  writeOrdering: { diskBarrier: boolean; diskFlushes: boolean; diskDrain: boolean; mdFlushes: boolean; alUpdates: boolean };
  /** disk { size } in bytes; 0 = the whole data area (DRBD's u_size). */
  configuredSizeBytes: number;
  /** The drbdsetup-84 option arguments drbdadm would pass for this resource (adjust's plan lines). */
  setupArgs: { net: readonly string[]; attach: readonly string[]; diskOptions: readonly string[]; resource: readonly string[] };
  /** The full config-layer view, handed to layers that take it (peer, resource). */
  view: unknown;
}
