/**
 * config/model — the parsed DRBD 8.4 configuration, kept in drbdadm's own shape
 * (ordered option lists, host sections, implicit volume 0) so `dump` can print it
 * the way drbdadm-84 does. Node-independent: which host section is "this node"
 * is decided later (config/hosts). Knows nothing about sockets or disks.
 */

/** Where a statement was written: the file as drbdadm names it in messages, and its 1-based line. */
export interface SourcePos {
  file: string;
  line: number;
}

/** One `name value;` (or bare flag) statement, in file order. */
export interface OptionEntry {
  name: string;
  /** null only for bare startup flags such as `stacked-timeouts`. */
  value: string | null;
  /** Value is already printable (become-primary-on host lists); dump must not quote it. */
  isEscaped?: boolean;
  /** Where the option was written (for support checks; dump ignores it). */
  at?: SourcePos;
}

export interface VolumeDef {
  vnr: number;
  /** true for volume 0 written without a `volume 0 { }` block. */
  implicit: boolean;
  /** Device path as written (`/dev/drbd1`, `/dev/drbd_rmq`); undefined for `device minor N`. */
  device?: string;
  /** -1 when not given. */
  minor: number;
  disk?: string;
  /** `internal` or a path. */
  metaDisk?: string;
  /** `internal`, `flexible`, or a decimal index. */
  metaIndex?: string;
  /** Where the meta-disk / flexible-meta-disk statement was written. */
  metaDiskAt?: SourcePos;
  /** Where `volume N {` was written (undefined for the implicit volume 0). */
  at?: SourcePos;
  diskOptions: OptionEntry[];
}

export interface AddressDef {
  /** `ipv4`, `ipv6`, `ssocks`, `sdp`. */
  family: string;
  host: string;
  /** Port as written (decimal text). */
  port: string;
}

export interface HostSection {
  /** Host names after `on`; for `floating` a synthetic `ADDR:PORT` name. */
  names: string[];
  byAddress: boolean;
  address?: AddressDef;
  altAddress?: AddressDef;
  /** Where `alternate-link-address` was written. */
  altAddressAt?: SourcePos;
  volumes: VolumeDef[];
  resOptions: OptionEntry[];
  /** Line of the section's opening in its file. */
  configLine: number;
}

export interface ResourceDef {
  name: string;
  /** Absolute path of the file holding the resource (drbdadm prints this in `# defined at`). */
  configFile: string;
  /** Line of `resource NAME {` within the file that holds it. */
  startLine: number;
  /** The file actually holding the resource (differs from configFile for includes). */
  sourceFile: string;
  hosts: HostSection[];
  /** Resource-level device/disk/meta-disk and `volume N {}` blocks, inherited by hosts. */
  volumes: VolumeDef[];
  netOptions: OptionEntry[];
  diskOptions: OptionEntry[];
  startupOptions: OptionEntry[];
  handlers: OptionEntry[];
  resOptions: OptionEntry[];
  becomePrimaryOn?: string[];
  /** Where `become-primary-on` was written. */
  becomePrimaryOnAt?: SourcePos;
  stackedTimeouts: boolean;
}

export interface GlobalOptions {
  usageCount: 'yes' | 'no' | 'ask';
  minorCount: number;
  dialogRefresh: number;
  disableIpVerification: boolean;
  udevAlwaysUseVnr: boolean;
  cmdTimeoutShortS: number;
  cmdTimeoutMediumS: number;
  cmdTimeoutLongS: number;
}

export interface DrbdConfig {
  /** Path as given with -c (used in error messages, as drbdadm does). */
  path: string;
  /** Absolute path (the dump header). */
  canonicalPath: string;
  global: GlobalOptions;
  common?: ResourceDef;
  resources: ResourceDef[];
  /** Non-fatal messages drbdadm prints on stderr while parsing. */
  warnings: string[];
  /** Where each global option was written, by keyword (`usage-count`, `minor-count`, ...). */
  globalPositions?: Record<string, SourcePos>;
}

/** drbdadm's global_options initial values (drbd-utils 9.22 as observed with `dump`). */
export const GLOBAL_DEFAULTS: Readonly<GlobalOptions> = {
  usageCount: 'ask',
  minorCount: 0,
  dialogRefresh: 1,
  disableIpVerification: false,
  udevAlwaysUseVnr: false,
  cmdTimeoutShortS: 5,
  cmdTimeoutMediumS: 600,
  cmdTimeoutLongS: 0,
};

/** Values `dump` treats as "not worth printing" (drbdadm's CMD_TIMEOUT_*_DEF). */
export const CMD_TIMEOUT_SHORT_DEF_S = 5;
export const CMD_TIMEOUT_MEDIUM_DEF_S = 121;
export const CMD_TIMEOUT_LONG_DEF_S = 600;
