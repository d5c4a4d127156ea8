/**
 * config/dump — prints a parsed configuration in drbdadm-84's `dump` normal form:
 * the `# FILE` header, global and common sections, then per resource the
 * `# resource R on NODE: ...` comment, host sections repeating device / disk /
 * meta-disk / address, and the option sections. With `expand` (drbdadm -d / -v)
 * common options are folded into resources and resource disk options into
 * volumes, exactly as drbdadm's expand_common does. Pure text; no I/O.
 */
import {
  type DrbdConfig, type ResourceDef, type HostSection, type VolumeDef, type OptionEntry, type AddressDef,
  CMD_TIMEOUT_SHORT_DEF_S, CMD_TIMEOUT_MEDIUM_DEF_S, CMD_TIMEOUT_LONG_DEF_S,
} from './model.js';
import type { NodeBinding } from './hosts.js';

const INDENT_WIDTH = 4;

/** drbdadm's esc(): quote unless the value is a plain word; backslash-escape `"` and `\`. */
export function escapeValue(value: string | undefined): string {
  if (value === undefined || value === '') return '""';
  if (/^[a-zA-Z0-9/._-]+$/.test(value)) return value;
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}

/** printf("%*s", width, text) with C semantics for negative widths. */
function pad(text: string, width: number): string {
  return width < 0 ? text.padEnd(-width) : text.padStart(width);
}

class Printer {
  text = '';
  indent = 0;

  /** printI */
  line(s: string): void {
    this.text += ' '.repeat(INDENT_WIDTH * this.indent) + s;
  }

  /** printA: name padded to column 24, value right-aligned in 3. */
  option(name: string, value: string): void {
    this.text += `${' '.repeat(INDENT_WIDTH * this.indent)}${pad(name, -24 + INDENT_WIDTH * this.indent)} ${pad(value, 3)};\n`;
  }

  options(section: string, opts: readonly OptionEntry[]): void {
    if (opts.length === 0) return;
    this.line(`${section} {\n`);
    this.indent++;
    for (const o of opts) {
      if (o.value === null) this.line(`${o.name};\n`);
      else this.option(o.name, o.isEscaped ? o.value : escapeValue(o.value));
    }
    this.indent--;
    this.line('}\n');
  }

  address(name: string, a: AddressDef): void {
    if (a.family === 'ipv6') this.line(`${name.padEnd(16)} ${a.family} [${a.host}]:${a.port};\n`);
    else this.line(`${name.padEnd(16)} ${a.family} ${a.host}:${a.port};\n`);
  }
}

function dumpGlobal(p: Printer, config: DrbdConfig, verbose: boolean): void {
  const g = config.global;
  if (!g.minorCount && !g.disableIpVerification && g.dialogRefresh === 1 && g.usageCount === 'ask' && !verbose) return;
  p.line('global {\n');
  p.indent++;
  if (g.disableIpVerification) p.line('disable-ip-verification;\n');
  if (g.minorCount) p.line(`minor-count ${g.minorCount};\n`);
  if (g.dialogRefresh !== 1) p.line(`dialog-refresh ${g.dialogRefresh};\n`);
  if (g.usageCount !== 'ask') p.line(`usage-count ${g.usageCount};\n`);
  if (g.cmdTimeoutShortS !== CMD_TIMEOUT_SHORT_DEF_S) p.line(`cmd-timeout-short ${g.cmdTimeoutShortS};\n`);
  if (g.cmdTimeoutMediumS !== CMD_TIMEOUT_MEDIUM_DEF_S) p.line(`cmd-timeout-medium ${g.cmdTimeoutMediumS};\n`);
  if (g.cmdTimeoutLongS !== CMD_TIMEOUT_LONG_DEF_S) p.line(`cmd-timeout-long ${g.cmdTimeoutLongS};\n`);
  p.indent--;
  p.line('}\n\n');
}

/** fake_startup_options: stacked-timeouts and become-primary-on are printed as startup options. */
function startupWithFakes(res: ResourceDef): OptionEntry[] {
  const opts = [...res.startupOptions];
  if (res.stackedTimeouts) opts.push({ name: 'stacked-timeouts', value: null });
  if (res.becomePrimaryOn) opts.push({ name: 'become-primary-on', value: res.becomePrimaryOn.join(' '), isEscaped: true });
  return opts;
}

function dumpSections(p: Printer, res: ResourceDef): void {
  p.options('options', res.resOptions);
  p.options('net', res.netOptions);
  p.options('disk', res.diskOptions);
  p.options('startup', startupWithFakes(res));
  p.options('handlers', res.handlers);
}

function dumpCommon(p: Printer, common: ResourceDef | undefined): void {
  if (!common) return;
  p.line('common {\n');
  p.indent++;
  dumpSections(p, common);
  p.indent--;
  p.text += '}\n\n';
}

function dumpVolume(p: Printer, vol: VolumeDef): void {
  if (!vol.implicit) {
    p.line(`volume ${vol.vnr} {\n`);
    p.indent++;
  }
  p.options('disk', vol.diskOptions);
  p.line(`device${pad('', -19 + INDENT_WIDTH * p.indent)}`);
  if (vol.device !== undefined) p.text += `${escapeValue(vol.device)} `;
  p.text += `minor ${vol.minor};\n`;
  p.option('disk', escapeValue(vol.disk));
  if (vol.metaIndex === 'flexible') p.line(`${'meta-disk'.padEnd(16)} ${escapeValue(vol.metaDisk)};\n`);
  else if (vol.metaIndex === 'internal') p.option('meta-disk', 'internal');
  else p.line(`${'meta-disk'.padEnd(16)} ${escapeValue(vol.metaDisk)} [${vol.metaIndex ?? ''}];\n`);
  if (!vol.implicit) {
    p.indent--;
    p.line('}\n');
  }
}

function dumpHost(p: Printer, host: HostSection): void {
  if (host.byAddress && host.address) {
    const a = host.address;
    if (a.family === 'ipv6') p.line(`floating ipv6 [${a.host}]:${a.port} {\n`);
    else p.line(`floating ${a.family} ${a.host}:${a.port} {\n`);
  } else p.line(`on ${host.names.join(' ')} {\n`);
  p.indent++;
  p.options('options', host.resOptions);
  for (const vol of host.volumes) dumpVolume(p, vol);
  if (!host.byAddress && host.address) p.address('address', host.address);
  if (host.altAddress) p.address('alternate-link-address', host.altAddress);
  p.indent--;
  p.line('}\n');
}

/** expand_opts: options from `from` missing in `to` are prepended one by one (so they end up reversed). */
function expandOptions(from: readonly OptionEntry[], to: readonly OptionEntry[]): OptionEntry[] {
  const result = [...to];
  for (const o of from) {
    if (!result.some((r) => r.name === o.name)) result.unshift({ name: o.name, value: o.value, ...(o.at ? { at: o.at } : {}) });
  }
  return result;
}

/** drbdadm's expand_common, on copies. */
export function expandCommon(config: DrbdConfig): ResourceDef[] {
  const common = config.common;
  return config.resources.map((orig) => {
    const res: ResourceDef = {
      ...orig,
      hosts: orig.hosts.map((h) => ({
        ...h,
        volumes: h.volumes.map((v) => ({ ...v, device: v.device ?? `/dev/drbd${v.minor}`, diskOptions: [...v.diskOptions] })),
      })),
    };
    if (common) {
      res.netOptions = expandOptions(common.netOptions, res.netOptions);
      res.diskOptions = expandOptions(common.diskOptions, res.diskOptions);
      res.startupOptions = expandOptions(common.startupOptions, res.startupOptions);
      res.handlers = expandOptions(common.handlers, res.handlers);
      res.resOptions = expandOptions(common.resOptions, res.resOptions);
      if (common.stackedTimeouts) res.stackedTimeouts = true;
      res.becomePrimaryOn ??= common.becomePrimaryOn;
    }
    for (const h of res.hosts) {
      for (const v of h.volumes) v.diskOptions = expandOptions(res.diskOptions, v.diskOptions);
    }
    for (const rv of res.volumes) {
      for (const h of res.hosts) {
        const hv = h.volumes.find((v) => v.vnr === rv.vnr);
        if (hv) hv.diskOptions = expandOptions(rv.diskOptions, hv.diskOptions);
      }
    }
    return res;
  });
}

export interface DumpOptions {
  nodeName: string;
  /** drbdadm -d / -v: fold common into resources. */
  expand: boolean;
  verbose: boolean;
}

function dumpResource(p: Printer, res: ResourceDef, binding: NodeBinding | undefined, nodeName: string): void {
  const ignored = binding?.ignored ?? true;
  p.line(`# resource ${escapeValue(res.name)} on ${nodeName}: ${ignored ? 'ignored' : 'not ignored'}, not stacked\n`);
  p.line(`# defined at ${res.configFile}:${res.startLine}\n`);
  p.line(`resource ${escapeValue(res.name)} {\n`);
  p.indent++;
  for (const host of res.hosts) dumpHost(p, host);
  dumpSections(p, res);
  p.indent--;
  p.text += '}\n\n';
}

/**
 * `dump` text. `only` lists resource names (drbdadm `dump RES...`, no header);
 * undefined means all resources with the header (`dump` / `dump all`).
 */
export function dumpConfig(config: DrbdConfig, bindings: readonly NodeBinding[], opts: DumpOptions, only?: readonly string[]): string {
  const p = new Printer();
  const resources = opts.expand || opts.verbose ? expandCommon(config) : config.resources;
  const bindingOf = (name: string) => bindings.find((b) => b.resource.name === name);
  if (only === undefined) {
    p.text += `# ${config.canonicalPath}\n`;
    dumpGlobal(p, config, opts.verbose);
    dumpCommon(p, config.common);
    for (const res of resources) dumpResource(p, res, bindingOf(res.name), opts.nodeName);
    return p.text;
  }
  for (const name of only) {
    const res = resources.find((r) => r.name === name);
    if (res) dumpResource(p, res, bindingOf(name), opts.nodeName);
  }
  return p.text;
}
