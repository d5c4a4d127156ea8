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

/**
 * One volume of the resource (DRBD 8.4's drbd_conf): its number, minor,
 * device, backing and meta disk and disk { } options. The layers that work
 * on one volume (meta-store, the data path, the frontend) read these.
 */
export interface VolumeSpec {
  /** The volume number as configured (`volume N`; 0 without a volume block): the frame header's and events2's. */
  volume: number;
  minor: number;
  devicePath: string;
  diskPath: string;
  /** `internal`, or the external meta device and its slot (`flexible`: the whole device). */
  metaDisk: 'internal' | { path: string; index: number | 'flexible' };
  /** The meta device and the index words drbdmeta (`flex-external`) and drbdsetup-84 attach (`flexible`) take. */
  metaArgs: { device: string; drbdmetaIndex: string; attachIndex: string };
  /** disk { al-extents } */
  alExtents: number;
  /** disk { disk-barrier disk-flushes disk-drain md-flushes al-updates } (DRBD's defaults: no, yes, yes, yes, yes). */
  writeOrdering: { diskBarrier: boolean; diskFlushes: boolean; diskDrain: boolean; mdFlushes: boolean; alUpdates: boolean };
  /** disk { size } in bytes; 0 = the whole data area (DRBD's u_size). */
  configuredSizeBytes: number;
  /** The drbdsetup-84 option arguments drbdadm would pass for this volume and its resource (adjust's plan lines). */
  setupArgs: { net: readonly string[]; attach: readonly string[]; diskOptions: readonly string[]; resource: readonly string[] };
  /** The config-layer view of the resource through this volume (its disk { } options; net the resource's). */
  view: unknown;
}

/**
 * The resource on this node. Its own VolumeSpec fields are the first
 * volume's (the lowest number), which is all a one-volume resource has;
 * `volumes` lists every volume in number order.
 */
export interface ResourceSpec extends VolumeSpec {
  name: string;
  node: string;
  configPath: string;
  localAddress: AddressSpec | undefined;
  peer: { name: string; address: AddressSpec } | undefined;
  handlers: Record<string, string>;
  /** disk { fencing } (DRBD 8.4 keeps it per resource: fence-peer runs once for the connection). */
  fencing: 'dont-care' | 'resource-only' | 'resource-and-stonith';
  /** Every volume of the resource on this node, by ascending number; volumes[0] is the spec's own fields. */
  volumes: readonly VolumeSpec[];
}

/**
 * The spec as the layers of volume `vnr` see it: the resource's fields with
 * that volume's in place of the first one's. Throws for a volume the
 * resource does not have.
 */
export function volumeSpec(spec: ResourceSpec, vnr: number): ResourceSpec {
  const volume = spec.volumes.find((v) => v.volume === vnr);
  if (volume === undefined) throw new Error(`resource ${spec.name} has no volume ${vnr} (volumes ${spec.volumes.map((v) => v.volume).join(', ')})`);
  return { ...spec, ...volume };
}
