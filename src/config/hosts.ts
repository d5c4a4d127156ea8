/**
 * config/hosts — which host section of a resource is "this node" (drbdadm's
 * set_me_in_resource / set_peer_in_resource) and the per-resource checks drbdadm
 * runs once it knows that (validate_resource). A node is named explicitly
 * (--node / UDRBD_NODE / uname -n); `floating` sections match by address.
 * Knows nothing about output formats.
 */
import os from 'node:os';
import type { DrbdConfig, HostSection, ResourceDef } from './model.js';

export interface NodeBinding {
  resource: ResourceDef;
  /** This node's host section; undefined means the resource is ignored on this node. */
  me?: HostSection;
  /** The peer's host section when it is unambiguous (exactly two sections). */
  peer?: HostSection;
  ignored: boolean;
}

/** Addresses configured on this machine's interfaces (for `floating` sections). */
function localAddresses(): Set<string> {
  const result = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) {
    for (const info of list ?? []) result.add(info.address);
  }
  return result;
}

export interface BindResult {
  bindings: NodeBinding[];
  /** drbdadm's messages for invalid host sections; non-empty means exit 10. */
  errors: string[];
}

export function bindNode(config: DrbdConfig, nodeName: string): BindResult {
  const errors: string[] = [];
  let locals: Set<string> | undefined;
  const bindings = config.resources.map((res): NodeBinding => {
    let me: HostSection | undefined;
    for (const host of res.hosts) {
      let matches: boolean;
      if (host.byAddress) {
        locals ??= localAddresses();
        matches = host.address !== undefined && (host.address.host === nodeName || locals.has(host.address.host));
      } else {
        matches = host.names.includes(nodeName) || host.names[0] === '_this_host';
      }
      if (!matches) continue;
      if (me) {
        errors.push(
          `${res.configFile}:${host.configLine}: in resource ${res.name}, on ${me.names.join(' ')} { ... } ... on ${host.names.join(' ')} { ... }:\n` +
            '\tThere are multiple host sections for this node.\n',
        );
      }
      me = host;
    }
    if (!me) return { resource: res, ignored: true };
    const peer = res.hosts.length === 2 ? res.hosts.find((h) => h !== me) : undefined;
    return { resource: res, me, peer, ignored: false };
  });
  return { bindings, errors };
}

/** validate_resource (the parts that apply to udrbd); returns drbdadm's messages. */
export function validateBindings(config: DrbdConfig, bindings: readonly NodeBinding[]): string[] {
  const errors: string[] = [];
  const byName = new Map(bindings.map((b) => [b.resource.name, b]));
  for (const b of bindings) {
    const res = b.resource;
    for (const opt of res.diskOptions) {
      if (opt.name !== 'resync-after' || opt.value === null) continue;
      const target = byName.get(opt.value.split('/')[0]!);
      if (!target || target.ignored) {
        errors.push(
          `${res.configFile}:${res.startLine}: in resource ${res.name}:\n\tresource '${opt.value}' mentioned in ` +
            `'resync-after' option is not known${target ? ' on this host' : ''}.\n`,
        );
      }
    }
    if (b.ignored || !b.me) continue;
    const me = b.me;
    const asb0 = res.netOptions.find((o) => o.name === 'after-sb-0pri');
    if (asb0?.value?.startsWith('discard-node-') && b.peer) {
      const node = asb0.value.slice('discard-node-'.length);
      if (!b.peer.names.includes(node) && !me.names.includes(node)) {
        errors.push(
          `${res.configFile}:${res.startLine}: in resource ${res.name}:\n\tthe nodename in the '${asb0.value}' option is not known.\n` +
            `\tvalid nodenames are: '${me.names.join(' ')} ${b.peer.names.join(' ')}'.\n`,
        );
      }
    }
    const becomePrimaryOn = res.becomePrimaryOn ?? config.common?.becomePrimaryOn;
    const allowTwo = res.netOptions.some((o) => o.name === 'allow-two-primaries');
    if (becomePrimaryOn?.includes('both') && !allowTwo) {
      errors.push(
        `${res.configFile}:${res.startLine}: in resource ${res.name}:\nbecome-primary-on is set to both, but allow-two-primaries is not set.\n`,
      );
    }
    for (const name of res.becomePrimaryOn ?? []) {
      if (b.peer && !me.names.includes(name) && !b.peer.names.includes(name) && name !== 'both') {
        errors.push(
          `${res.configFile}:${res.startLine}: in resource ${res.name}:\n\tbecome-primary-on contains '${name}', which is not named with the 'on' sections.\n`,
        );
      }
    }
  }
  return errors;
}
