/**
 * config/setup-args — the option arguments drbdadm-84 appends to the
 * drbdsetup-84 calls it generates for one resource on one node
 * (`--protocol=B --ping-int=5` for connect / net-options, `--resync-rate=10M`
 * for attach / disk-options, the resource options): common folded in as
 * expand_common does, in drbdadm's list order, values as written in the file
 * (shell-escaped as drbdadm prints them). Pure; knows nothing of daemons.
 */
import type { DrbdConfig, OptionEntry } from './model.js';
import { expandCommon } from './dump.js';
import { bindNode } from './hosts.js';
import { shellEscape } from '../util/shell-escape.js';
export { shellEscape };

export interface SetupArgs {
  /** net { } options: `connect` and `net-options` take these. */
  readonly net: readonly string[];
  /** disk { } options of volume 0 on this node: `attach` takes these. */
  readonly attach: readonly string[];
  /** The same without `size` (drbdadm resizes for that): `disk-options` takes these. */
  readonly diskOptions: readonly string[];
  /** options { } (resource options). */
  readonly resource: readonly string[];
}

/**
 * drbdsetup takes `--resync-after=MINOR`: drbdadm replaces the resource name
 * (or `res/volume`) with that volume's minor on this node (volume 0 if none
 * is named). Unknown names are validate_resource's error before this.
 */
export function withResyncAfterMinor(config: DrbdConfig, nodeName: string, options: readonly OptionEntry[]): OptionEntry[] {
  return options.map((o) => {
    if (o.name !== 'resync-after' || o.value === null) return o;
    const [name, vnr] = o.value.split('/');
    const binding = bindNode(config, nodeName).bindings.find((b) => b.resource.name === name);
    const volume = binding?.me?.volumes.find((v) => v.vnr === Number(vnr ?? 0)) ?? binding?.me?.volumes[0];
    return volume === undefined ? o : { ...o, value: String(volume.minor) };
  });
}

function render(options: readonly OptionEntry[], skip: readonly string[] = []): string[] {
  return options.filter((o) => !skip.includes(o.name)).map((o) => `--${o.name}=${shellEscape(o.value ?? 'yes')}`);
}

/** The option arguments for `resourceName` as seen from `nodeName` (undefined: no such resource on this node). */
export function setupArgs(config: DrbdConfig, resourceName: string, nodeName: string, vnr?: number): SetupArgs | undefined {
  const binding = bindNode(config, nodeName).bindings.find((b) => b.resource.name === resourceName);
  if (!binding || binding.ignored || !binding.me) return undefined;
  const res = expandCommon(config).find((r) => r.name === resourceName);
  if (!res) return undefined;
  const me = res.hosts[binding.resource.hosts.indexOf(binding.me)];
  // One volume's attach / disk-options words (the first without vnr); net and resource options are the resource's.
  const volume = vnr === undefined ? me?.volumes[0] : me?.volumes.find((v) => v.vnr === vnr);
  const disk = withResyncAfterMinor(config, nodeName, volume && volume.diskOptions.length > 0 ? volume.diskOptions : res.diskOptions);
  return { net: render(res.netOptions), attach: render(disk), diskOptions: render(disk, ['size']), resource: render(res.resOptions) };
}
