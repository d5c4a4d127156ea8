/**
 * config/parser — a recursive-descent parser for the DRBD 8.4 configuration
 * language that follows drbdadm-84's hand-written parser statement by statement,
 * so the same input yields the same model, the same uniqueness checks and the
 * same error text (file:line, "Parse error: 'X' expected, but got 'Y' (TK n)").
 * Reads files (include globs) but knows nothing about hosts, sockets or disks.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Lexer, Tk, type Token, type RangeCheck } from './lexer.js';
import {
  RANGES, PORT_RANGE, MINOR_COUNT_RANGE, DIALOG_REFRESH_RANGE, CMD_TIMEOUT_RANGE, parseScaledNumber, type Range,
} from './limits.js';
import {
  type DrbdConfig, type ResourceDef, type HostSection, type VolumeDef, type OptionEntry, type AddressDef,
  type GlobalOptions, type SourcePos, GLOBAL_DEFAULTS,
} from './model.js';
import { globPaths } from './glob.js';

/** drbdadm exit codes used while parsing. */
export const E_CONFIG_INVALID = 10;
export const E_EXEC_ERROR = 20;

/** Includes nested deeper than this are refused (flex's include stack is 10 deep). */
const INCLUDE_DEPTH_MAX = 10;
/** Same bound drbdadm's error messages apply to the offending token. */
const TOKEN_ECHO_CHARS_MAX = 20;

/** A parse that drbdadm would end with an exit: `stderr` is everything it would have printed. */
export class ConfigParseError extends Error {
  override name = 'ConfigParseError';
  constructor(readonly stderr: string, readonly exitCode: number) {
    super(stderr.trimEnd());
  }
}

/** Thrown internally to unwind to loadConfig; carries no text of its own. */
class Abort extends Error {
  constructor(readonly exitCode: number) {
    super('abort');
  }
}

type Delegate = (ctx: ResourceDef) => void;

interface FileState {
  lexer: Lexer;
  /** Name used in messages: the -c path, or the include path as globbed. */
  name: string;
  /** Absolute path (for relative include resolution of nested files). */
  absPath: string;
  /** The last token read. */
  token: Token;
}

export class Parser {
  private stderr = '';
  private valid = true;
  private file!: FileState;
  private fline = 1;
  private cSectionStart = 1;
  private readonly globalSeen = new Map<string, string>();
  private perResource = new Map<string, string>();
  private readonly seenFiles = new Set<string>();
  private includeDepth = 0;
  private globalOptions: GlobalOptions = { ...GLOBAL_DEFAULTS };
  private common: ResourceDef | undefined;
  private readonly resources: ResourceDef[] = [];
  private readonly globalPositions: Record<string, SourcePos> = {};
  private readonly canonicalPath: string;

  constructor(private readonly configPath: string) {
    this.canonicalPath = canonify(configPath);
  }

  parse(): DrbdConfig {
    let text: string;
    try {
      text = fs.readFileSync(this.configPath, 'utf8');
    } catch {
      throw new ConfigParseError(`Can not open '${this.configPath}'.\n`, E_EXEC_ERROR);
    }
    try {
      this.seenFiles.add(realpathOr(this.configPath));
      this.parseFile(text, this.configPath, this.canonicalPath);
    } catch (err) {
      if (err instanceof Abort) throw new ConfigParseError(this.stderr, err.exitCode);
      throw err;
    }
    if (!this.valid) throw new ConfigParseError(this.stderr, E_CONFIG_INVALID);
    return {
      path: this.configPath,
      canonicalPath: this.canonicalPath,
      global: this.globalOptions,
      common: this.common,
      resources: this.resources,
      warnings: this.stderr ? this.stderr.split('\n').filter((l) => l !== '') : [],
      globalPositions: this.globalPositions,
    };
  }

  /* ----------------------------------------------------------- plumbing */

  private get line(): number {
    return this.file.lexer.line;
  }

  private get fileName(): string {
    return this.file.name;
  }

  /** The statement being parsed: this file, the line of its first token (drbdadm's fline). */
  private here(): SourcePos {
    return { file: this.fileName, line: this.fline };
  }

  private lex(): number {
    this.file.token = this.file.lexer.next();
    return this.file.token.code;
  }

  private get tok(): Token {
    return this.file.token;
  }

  private log(text: string): void {
    this.stderr += text;
  }

  private invalid(text: string): void {
    this.valid = false;
    this.log(text);
  }

  private fatal(text: string, exitCode = E_CONFIG_INVALID): never {
    this.log(text);
    throw new Abort(exitCode);
  }

  private echo(): string {
    const s = this.tok.text;
    return s.length > TOKEN_ECHO_CHARS_MAX ? `${s.slice(0, TOKEN_ECHO_CHARS_MAX)}...` : s;
  }

  /** pe_expected: no token number. */
  private expected(what: string): never {
    this.fatal(`${this.fileName}:${this.line}: Parse error: '${what}' expected,\n\tbut got '${this.echo()}'\n`);
  }

  /** pe_expected_got: with "(TK n)". */
  private expectedGot(what: string, got: number): never {
    this.fatal(`${this.fileName}:${this.line}: Parse error: '${what}' expected,\n\tbut got '${this.echo()}' (TK ${got})\n`);
  }

  private checkStringError(got: number): void {
    let msg: string;
    if (got === Tk.ERR_STRING_TOO_LONG) msg = 'Token too long';
    else if (got === Tk.ERR_DQSTRING_TOO_LONG) msg = 'Double quoted string too long';
    else if (got === Tk.ERR_DQSTRING) msg = "Unterminated double quoted string\n  we don't allow embedded newlines\n ";
    else return;
    this.fatal(`${this.fileName}:${this.line}: ${msg} >>>${this.tok.text.slice(0, TOKEN_ECHO_CHARS_MAX)}...<<<\n`);
  }

  /** EXP(x): the next token must be `code`; `name` is how drbdadm spells it in the error. */
  private exp(code: number, name: string): Token {
    const got = this.lex();
    if (got !== code) {
      if (code === Tk.STRING) this.checkStringError(got);
      this.expectedGot(name, got);
    }
    return this.tok;
  }
  private expChar(ch: string): Token {
    return this.exp(ch.charCodeAt(0), ch);
  }
  private expString(): Token {
    return this.exp(Tk.STRING, 'TK_STRING');
  }
  private expInteger(): Token {
    return this.exp(Tk.INTEGER, 'TK_INTEGER');
  }

  private expectStringOrInt(): string {
    const got = this.lex();
    if (got === Tk.INTEGER || got === Tk.STRING || got === Tk.ON) return this.tok.value;
    this.checkStringError(got);
    this.expectedGot('TK_STRING | TK_INTEGER', got);
  }

  /** vcheck_uniq: a second use of `key` is an error naming both places (drbdadm exits at once). */
  private checkUniq(table: Map<string, string>, what: string, key: string): void {
    const here = `${this.fileName}:${this.fline}`;
    const first = table.get(key);
    if (first === undefined) {
      table.set(key, here);
      return;
    }
    this.fatal(`${here}: conflicting use of ${what} '${key}' ...\n${first}: ${what} '${key}' first used here.\n`);
  }
  private uniq(what: string, key: string): void {
    this.checkUniq(this.globalSeen, what, key);
  }
  private upr(what: string, key: string): void {
    this.checkUniq(this.perResource, what, key);
  }

  private rangeCheckValue(range: Range, name: string, value: string): void {
    const parsed = parseScaledNumber(value, range.scale);
    if (!parsed.ok) this.fatal(`${parsed.message}\n`, E_EXEC_ERROR);
    if (parsed.value < range.min || parsed.value > range.max) {
      const unit = range.scale === '1' ? '' : range.scale;
      this.invalid(
        `${this.fileName}:${this.fline}: ${name} ${value} => ${parsed.value}${unit} out of range [${range.min}..${range.max}]${unit}.\n`,
      );
    }
  }

  /** range_check: returns the (possibly normalised) value. */
  private rangeCheck(check: RangeCheck, name: string, value: string): string {
    if (check === 'none' || check === 'alExtents') return value;
    if (check === 'protocol') {
      if (value.length === 1) {
        const proto = value.toUpperCase();
        if (proto === 'A' || proto === 'B' || proto === 'C') return proto;
      }
      this.invalid(`unknown protocol '${value}', should be one of A,B,C\n`);
      return value;
    }
    const range = RANGES[check];
    if (range) this.rangeCheckValue(range, name, value);
    return value;
  }

  /* ----------------------------------------------------------- files */

  private parseFile(text: string, name: string, absPath: string): void {
    const saved = this.file as FileState | undefined;
    this.file = { lexer: new Lexer(text), name, absPath, token: { code: 0, text: '', value: '', rangeCheck: 'none', line: 1 } };
    try {
      this.parseTop();
    } finally {
      if (saved) this.file = saved;
    }
  }

  private parseTop(): void {
    for (;;) {
      const token = this.lex();
      this.fline = this.line;
      switch (token) {
        case Tk.GLOBAL:
          this.parseGlobal();
          break;
        case Tk.COMMON:
          this.expChar('{');
          this.common = this.parseResource('common', true);
          break;
        case Tk.RESOURCE: {
          const name = this.expString().value;
          this.ensureSaneResourceName(name);
          this.expChar('{');
          this.resources.push(this.parseResource(name, false));
          break;
        }
        case Tk.SKIP:
          this.parseSkip();
          break;
        case Tk.INCLUDE: {
          const pattern = this.expString().value;
          this.expChar(';');
          this.includeStatement(pattern);
          break;
        }
        case Tk.eof:
          return;
        default:
          this.expected('global | common | resource | skip | include');
      }
    }
  }

  private ensureSaneResourceName(name: string): void {
    // drbdadm allows [-%+./0-9:=@A-Z_a-z]; the lexer's STRING already restricts to a subset.
    if (!/^[-%+./0-9:=@A-Z_a-z]+$/.test(name)) {
      this.fatal(`Invalid resource name '${name}'\n`);
    }
  }

  /**
   * include GLOB: relative to the directory of the file holding the include
   * (drbdadm chdirs to dirname(config_save), which include_file sets to each
   * included file's canonical path), so a nested include resolves next to its
   * includer whatever the cwd.
   */
  private includeStatement(pattern: string): void {
    const baseDir = path.dirname(this.file.absPath);
    const matches = globPaths(pattern, baseDir);
    if (matches.length === 0) {
      if (!/[?*[]/.test(pattern)) this.invalid(`${this.fileName}:${this.line}: Failed to open include file '${pattern}'.\n`);
      return;
    }
    for (const match of matches) {
      const abs = canonify(path.resolve(baseDir, match));
      const real = realpathOr(abs);
      if (this.seenFiles.has(real)) continue;
      this.seenFiles.add(real);
      let text: string;
      try {
        text = fs.readFileSync(abs, 'utf8');
      } catch {
        this.invalid(`${this.fileName}:${this.line}: Failed to open include file '${match}'.\n`);
        continue;
      }
      if (this.includeDepth >= INCLUDE_DEPTH_MAX) this.fatal('Includes nested too deeply', 1);
      this.includeDepth++;
      try {
        this.parseFile(text, match, abs);
      } finally {
        this.includeDepth--;
      }
    }
  }

  /* ----------------------------------------------------------- sections */

  private parseGlobal(): void {
    this.fline = this.line;
    this.uniq('global section', 'global');
    if (this.resources.length > 0) {
      this.log(`${this.fileName}:${this.line}: You should put the global {} section\n\tin front of any resource {} section\n`);
    }
    this.expChar('{');
    const g = this.globalOptions;
    for (;;) {
      const token = this.lex();
      this.fline = this.line;
      if (token !== 0x7d) this.globalPositions[this.tok.text] = this.here();
      switch (token) {
        case Tk.UDEV_ALWAYS_USE_VNR:
          g.udevAlwaysUseVnr = true;
          break;
        case Tk.DISABLE_IP_VERIFICATION:
          g.disableIpVerification = true;
          break;
        case Tk.MINOR_COUNT: {
          const v = this.expInteger().value;
          this.rangeCheckValue(MINOR_COUNT_RANGE, 'minor-count', v);
          g.minorCount = atoi(v);
          break;
        }
        case Tk.DIALOG_REFRESH: {
          const v = this.expInteger().value;
          this.rangeCheckValue(DIALOG_REFRESH_RANGE, 'dialog-refresh', v);
          g.dialogRefresh = atoi(v);
          break;
        }
        case Tk.CMD_TIMEOUT_SHORT:
        case Tk.CMD_TIMEOUT_MEDIUM:
        case Tk.CMD_TIMEOUT_LONG: {
          const name = this.tok.text;
          const v = this.expInteger().value;
          this.rangeCheckValue(CMD_TIMEOUT_RANGE, name, v);
          if (token === Tk.CMD_TIMEOUT_SHORT) g.cmdTimeoutShortS = atoi(v);
          else if (token === Tk.CMD_TIMEOUT_MEDIUM) g.cmdTimeoutMediumS = atoi(v);
          else g.cmdTimeoutLongS = atoi(v);
          break;
        }
        case Tk.USAGE_COUNT:
          switch (this.lex()) {
            case Tk.YES:
              g.usageCount = 'yes';
              break;
            case Tk.NO:
              g.usageCount = 'no';
              break;
            case Tk.ASK:
              g.usageCount = 'ask';
              break;
            default:
              this.expected('yes | no | ask');
          }
          break;
        case 0x7d /* } */:
          return;
        default:
          this.expected('dialog-refresh | minor-count | disable-ip-verification');
      }
      this.expChar(';');
    }
  }

  private parseSkip(): void {
    this.fline = this.line;
    const token = this.lex();
    if (token === Tk.STRING) this.expChar('{');
    else if (token !== 0x7b) {
      this.checkStringError(token);
      this.expected('[ some_text ] {');
    }
    let level = 1;
    while (level > 0) {
      const t = this.lex();
      if (t === 0x7b) level++;
      else if (t === 0x7d) level--;
      else if (t === Tk.eof) this.fatal(`${this.fileName}:${this.fline}: reached eof while parsing this skip block.\n`);
    }
  }

  private newResource(name: string): ResourceDef {
    return {
      name,
      configFile: this.file.absPath,
      startLine: this.line,
      sourceFile: this.file.absPath,
      hosts: [],
      volumes: [],
      netOptions: [],
      diskOptions: [],
      startupOptions: [],
      handlers: [],
      resOptions: [],
      stackedTimeouts: false,
    };
  }

  private parseResource(name: string, isCommon: boolean): ResourceDef {
    this.perResource = new Map();
    this.uniq('resource section', name);
    const res = this.newResource(name);
    for (;;) {
      const token = this.lex();
      this.fline = this.line;
      switch (token) {
        case Tk.NET_OPTION: {
          if (this.tok.text !== 'protocol') this.expectedGot(RESOURCE_EXPECTED, token);
          this.upr('protocol statement', `${res.name}: protocol`);
          const value = this.rangeCheck('protocol', 'protocol', this.expString().value);
          res.netOptions.push({ name: 'protocol', value, at: this.here() });
          this.expChar(';');
          break;
        }
        case Tk.ON: {
          const names = this.parseHosts(0x7b);
          this.parseHostSection(res, names, false);
          break;
        }
        case Tk.FLOATING:
          this.parseHostSection(res, [], true);
          break;
        case Tk.STACKED:
          this.fatal(`${this.fileName}:${this.line}: udrbd: stacked-on-top-of resources are not supported.\n`);
        case Tk.IGNORE:
          if (res.hosts.length > 0) {
            this.fatal(`${this.fileName}:${this.line}: in resource ${res.name}, 'ignore-on' statement must precede any real host section (on ... { ... }).\n`);
          }
          this.expString();
          this.log(`${this.fileName}:${this.line}: in resource ${res.name}, WARN: The 'ignore-on' keyword is deprecated.\n`);
          this.expChar(';');
          break;
        case Tk.THIS_HOST:
        case Tk.REMOTE_HOST:
        case Tk.PROXY:
          this.fatal(`${this.fileName}:${this.line}: udrbd: '${this.tok.text}' sections are not supported.\n`);
        case Tk.DISK: {
          const t = this.lex();
          if (t === Tk.STRING) {
            this.volume0(res.volumes).disk = this.tok.value;
            this.expChar(';');
          } else if (t === 0x7b) {
            this.upr('disk section', `${res.name}:disk`);
            res.diskOptions.push(...this.parseOptions(Tk.DISK_FLAG, Tk.DISK_NO_FLAG, Tk.DISK_OPTION));
          } else {
            this.checkStringError(t);
            this.expectedGot('TK_STRING | {', t);
          }
          break;
        }
        case Tk.NET:
          this.upr('net section', `${res.name}:net`);
          this.expChar('{');
          res.netOptions.push(...this.parseOptions(Tk.NET_FLAG, Tk.NET_NO_FLAG, Tk.NET_OPTION, Tk.NET_DELEGATE, () => this.netDelegate(), res));
          break;
        case Tk.SYNCER:
          this.upr('syncer section', `${res.name}:syncer`);
          this.expChar('{');
          this.parseSyncer(res);
          break;
        case Tk.STARTUP:
          this.upr('startup section', `${res.name}:startup`);
          this.expChar('{');
          res.startupOptions = this.parseOptions(Tk.STARTUP_FLAG, 0, Tk.STARTUP_OPTION, Tk.STARTUP_DELEGATE, (r) => this.startupDelegate(r), res);
          break;
        case Tk.HANDLER:
          this.upr('handlers section', `${res.name}:handlers`);
          this.expChar('{');
          res.handlers = this.parseOptions(0, 0, Tk.HANDLER_OPTION);
          break;
        case Tk.DEVICE:
          this.upr('device statement', `${res.name}:device`);
          this.parseVolumeStatement(this.volume0(res.volumes), null, token);
          break;
        case Tk.META_DISK:
        case Tk.FLEX_META_DISK:
          this.parseVolumeStatement(this.volume0(res.volumes), null, token);
          break;
        case Tk.VOLUME: {
          const vnr = atoi(this.expInteger().value);
          insertSorted(res.volumes, this.parseVolume(vnr, null));
          break;
        }
        case Tk.OPTIONS:
          this.upr('resource options section', `${res.name}:res_options`);
          this.expChar('{');
          res.resOptions.push(...this.parseOptions(0, 0, Tk.RES_OPTION));
          break;
        case 0x7d:
        case Tk.eof:
          if (isCommon && res.hosts.length > 0) {
            this.invalid(`${this.fileName}:${this.cSectionStart}: in the ${res.name} section, there are no host sections allowed.\n`);
          }
          this.checkVolumesHosts(res);
          return res;
        default:
          this.expectedGot(RESOURCE_EXPECTED, token);
      }
    }
  }

  private netDelegate(): void {
    this.expected('an option keyword');
  }

  private startupDelegate(res: ResourceDef): void {
    if (this.tok.text === 'become-primary-on') {
      res.becomePrimaryOnAt = this.here();
      res.becomePrimaryOn = this.parseHosts(0x3b);
    } else if (this.tok.text === 'stacked-timeouts') {
      res.stackedTimeouts = true;
      this.expChar(';');
    } else this.expected('<an option keyword> | become-primary-on | stacked-timeouts');
  }

  /** parse_options_d: a `{ ... }` block of options of one section kind. */
  private parseOptions(
    tokenFlag: number,
    tokenNoFlag: number,
    tokenOption: number,
    tokenDelegate = 0,
    delegate?: Delegate,
    ctx?: ResourceDef,
  ): OptionEntry[] {
    const options: OptionEntry[] = [];
    this.cSectionStart = this.line;
    this.fline = this.line;
    for (;;) {
      const group = this.lex();
      const token = group & (Tk.GROUPING_BASE - 1);
      this.fline = this.line;
      const name = this.tok.value;
      const at = this.here();
      if (token <= 0) {
        this.expected('an option');
      } else if (token === tokenFlag) {
        const t = this.lex();
        if (t === Tk.YES) options.push({ name, value: 'yes', at });
        else if (t === Tk.NO) options.push({ name, value: 'no', at });
        else if (t === 0x3b) {
          options.push({ name, value: 'yes', at });
          continue;
        } else this.expected('yes | no | ;');
      } else if (token === tokenNoFlag) {
        options.push({ name: name.slice(3), value: 'no', at });
      } else if (token === tokenOption || ((tokenOption & group) & ~(Tk.GROUPING_BASE - 1)) !== 0) {
        const optName = deprecatedAlias(name, tokenOption);
        const check = this.tok.rangeCheck;
        const value = this.rangeCheck(check, optName, this.expectStringOrInt());
        options.push({ name: optName, value, at });
      } else if (ctx && delegate && (token === tokenDelegate || ((tokenDelegate & group) & ~(Tk.GROUPING_BASE - 1)) !== 0)) {
        delegate(ctx);
        continue;
      } else if (token === Tk.DEPRECATED_OPTION) {
        this.expectStringOrInt();
      } else if (token === 0x7d) {
        return options;
      } else {
        this.expected('an option keyword');
      }
      this.expChar(';');
    }
  }

  /** The 8.3 `syncer { }` section: each option goes to net, disk or options. */
  private parseSyncer(res: ResourceDef): void {
    this.cSectionStart = this.line;
    this.fline = this.line;
    for (;;) {
      let token = this.lex();
      this.fline = this.line;
      if (token >= Tk.GLOBAL && (token & Tk.SYNCER_OLD_OPT) === 0) this.expected('a syncer option keyword');
      token &= ~Tk.SYNCER_OLD_OPT;
      let target: OptionEntry[];
      switch (token) {
        case Tk.NET_FLAG:
        case Tk.NET_NO_FLAG:
        case Tk.NET_OPTION:
          target = res.netOptions;
          break;
        case Tk.DISK_FLAG:
        case Tk.DISK_NO_FLAG:
        case Tk.DISK_OPTION:
          target = res.diskOptions;
          break;
        case Tk.RES_OPTION:
          target = res.resOptions;
          break;
        case 0x7d:
          return;
        default:
          this.expected('a syncer option keyword');
      }
      const name = this.tok.value;
      const at = this.here();
      let next: number;
      if (token === Tk.NET_FLAG || token === Tk.DISK_FLAG) {
        next = this.lex();
        if (next === Tk.NO) {
          target.push({ name, value: 'no', at });
          next = this.lex();
        } else {
          target.push({ name, value: 'yes', at });
          if (next === Tk.YES) next = this.lex();
        }
      } else if (token === Tk.NET_NO_FLAG || token === Tk.DISK_NO_FLAG) {
        target.push({ name: name.slice(3), value: 'no', at });
        next = this.lex();
      } else {
        const optName = deprecatedAlias(name, token);
        const check = this.tok.rangeCheck;
        const value = this.rangeCheck(check, optName, this.expectStringOrInt());
        target.push({ name: optName, value, at });
        next = this.lex();
      }
      if (next !== 0x3b) this.expected(';');
    }
  }

  private parseHosts(delimiter: number): string[] {
    const names: string[] = [];
    for (;;) {
      const token = this.lex();
      if (token === Tk.STRING) {
        names.push(this.tok.value);
        continue;
      }
      if (token === delimiter) {
        if (names.length === 0) this.expectedGot('TK_STRING', token);
        return names;
      }
      this.expectedGot(`TK_STRING | '${String.fromCharCode(delimiter)}'`, token);
    }
  }

  /** __parse_address: `[af] ADDR:PORT`. */
  private parseAddressBody(): AddressDef {
    let family: string;
    let host: string;
    switch (this.lex()) {
      case Tk.SCI:
        family = 'ssocks';
        host = this.exp(Tk.IPADDR, 'TK_IPADDR').value;
        break;
      case Tk.SSOCKS:
      case Tk.SDP:
      case Tk.IPV4:
        family = this.tok.value;
        host = this.exp(Tk.IPADDR, 'TK_IPADDR').value;
        break;
      case Tk.IPV6:
        family = 'ipv6';
        this.expChar('[');
        host = this.exp(Tk.IPADDR6, 'TK_IPADDR6').value;
        break;
      case Tk.IPADDR:
        family = 'ipv4';
        host = this.tok.value;
        break;
      default:
        this.expected('ssocks | sdp | ipv4 | ipv6 | <ipv4 address> ');
    }
    if (family === 'ipv6') this.expChar(']');
    this.expChar(':');
    const port = this.expInteger().value;
    this.rangeCheckValue(PORT_RANGE, 'port', port);
    return { family, host, port };
  }

  private parseAddress(names: string[]): AddressDef {
    const address = this.parseAddressBody();
    if (addrScopeLocal(address.host)) {
      for (const h of names) this.uniq('IP', `${h}:${address.host}:${address.port}`);
    } else this.uniq('IP', `${address.host}:${address.port}`);
    this.expChar(';');
    return address;
  }

  private volume0(volumes: VolumeDef[]): VolumeDef {
    if (volumes.length === 0) {
      const vol = newVolume(0, true);
      volumes.push(vol);
      return vol;
    }
    const vol = volumes[0]!;
    if (vol.vnr === 0 && volumes.length === 1 && vol.implicit) return vol;
    this.invalid(`${this.fileName}:${this.line}: mixing explicit and implicit volumes is not allowed\n`);
    return vol;
  }

  private parseMetaDisk(vol: VolumeDef): void {
    vol.metaDiskAt = { file: this.fileName, line: this.line };
    const value = this.expString().value;
    vol.metaDisk = value;
    if (value === 'internal') {
      vol.metaIndex = 'internal';
      this.expChar(';');
      return;
    }
    const t = this.lex();
    if (t === 0x5b) {
      vol.metaIndex = this.expInteger().value;
      this.expChar(']');
      this.expChar(';');
    } else if (t === 0x3b) {
      vol.metaIndex = 'flexible';
    } else this.expected('[ | ;');
  }

  private checkMinorNonsense(device: string | undefined, minor: number): void {
    if (device === undefined) return;
    const rest = device.slice(9);
    if (/^[0-9]+$/.test(rest)) {
      if (Number.parseInt(rest, 10) === minor) return;
      this.invalid(
        `${this.fileName}:${this.fline}: explicit minor number must match with device name\n` +
          `\tTry "device /dev/drbd${minor} minor ${minor};",\n` +
          '\tor leave off either device name or explicit minor.\n' +
          '\tArbitrary device names must start with /dev/drbd_\n' +
          "\tmind the '_'! (/dev/ is optional, but drbd_ is required)\n",
      );
      return;
    }
    // drbd-utils 9.22 accepts /dev/drbd_NAME silently.
    if (rest.startsWith('_')) return;
    this.invalid(`${this.fileName}:${this.fline}: explicit device names should be of the form /dev/drbd<minor>\n`);
  }

  private parseDevice(names: string[] | null, vol: VolumeDef): void {
    let t = this.lex();
    let viaName = false;
    if (t === Tk.STRING) {
      const written = this.tok.value;
      vol.device = written.startsWith('drbd') ? `/dev/${written}` : written;
      if (!vol.device.startsWith('/dev/drbd')) {
        this.invalid(`${this.fileName}:${this.fline}: device name must start with /dev/drbd\n\t(/dev/ is optional, but drbd is required)\n`);
      }
      t = this.lex();
      if (t !== Tk.MINOR) {
        if (t !== 0x3b) this.expected('minor | ;');
        const m = minorOfDevice(vol.device);
        if (m < 0) this.invalid(`${this.fileName}:${this.fline}: no minor given nor device name contains a minor number\n`);
        vol.minor = m;
        viaName = true;
      }
    } else if (t !== Tk.MINOR) {
      // drbdadm's switch has no default here: any other token is silently dropped.
      return;
    }
    if (!viaName) {
      vol.minor = atoi(this.expInteger().value);
      this.expChar(';');
      this.checkMinorNonsense(vol.device, vol.minor);
    }
    for (const h of names ?? []) {
      this.uniq('device-minor', `device-minor:${h}:${vol.minor}`);
      if (vol.device !== undefined) this.uniq('device', `device:${h}:${vol.device}`);
    }
  }

  /** parse_volume_stmt: false when `token` is not a volume statement. */
  private parseVolumeStatement(vol: VolumeDef, names: string[] | null, token: number): boolean {
    switch (token) {
      case Tk.DISK: {
        const t = this.lex();
        if (t === Tk.STRING) {
          vol.disk = this.tok.value;
          this.expChar(';');
        } else if (t === 0x7b) {
          vol.diskOptions = this.parseOptions(Tk.DISK_FLAG, Tk.DISK_NO_FLAG, Tk.DISK_OPTION);
        } else {
          this.checkStringError(t);
          this.expectedGot('TK_STRING | {', t);
        }
        return true;
      }
      case Tk.DEVICE:
        this.parseDevice(names, vol);
        return true;
      case Tk.META_DISK:
        this.parseMetaDisk(vol);
        return true;
      case Tk.FLEX_META_DISK: {
        vol.metaDiskAt = { file: this.fileName, line: this.line };
        const value = this.expString().value;
        vol.metaDisk = value;
        vol.metaIndex = value === 'internal' ? 'internal' : 'flexible';
        this.expChar(';');
        return true;
      }
      default:
        return false;
    }
  }

  private parseVolume(vnr: number, names: string[] | null): VolumeDef {
    const vol = newVolume(vnr, false);
    vol.at = { file: this.fileName, line: this.line };
    this.expChar('{');
    for (;;) {
      const token = this.lex();
      if (token === 0x7d) return vol;
      if (!this.parseVolumeStatement(vol, names, token)) {
        this.expectedGot('device | disk | meta-disk | flex-meta-disk | }', token);
      }
    }
  }

  private inheritVolumes(from: VolumeDef[], host: HostSection): void {
    for (const s of from) {
      let t = host.volumes.find((v) => v.vnr === s.vnr);
      if (!t) {
        t = newVolume(s.vnr, s.implicit);
        insertSorted(host.volumes, t);
      }
      if (t.at === undefined && s.at !== undefined) t.at = s.at;
      if (t.disk === undefined && s.disk !== undefined) {
        t.disk = s.disk;
        for (const h of host.names) this.uniq('disk', `disk:${h}:${t.disk}`);
      }
      if (t.device === undefined && s.device !== undefined) t.device = s.device;
      if (t.minor === -1 && s.minor !== -1) {
        t.minor = s.minor;
        for (const h of host.names) this.uniq('device-minor', `device-minor:${h}:${t.minor}`);
      }
      if (t.metaDisk === undefined && s.metaDisk !== undefined) {
        t.metaDisk = s.metaDisk;
        if (s.metaDiskAt !== undefined) t.metaDiskAt = s.metaDiskAt;
        if (s.metaIndex !== undefined) t.metaIndex = s.metaIndex;
      }
    }
  }

  private derror(host: HostSection, res: ResourceDef, what: string): void {
    this.invalid(`${this.fileName}:${this.cSectionStart}: in resource ${res.name}, on ${host.names.join(' ')} { ... }: '${what}' keyword missing.\n`);
  }

  private parseHostSection(res: ResourceDef, names: string[], byAddress: boolean): void {
    this.cSectionStart = this.line;
    this.fline = this.line;
    const host: HostSection = { names, byAddress, volumes: [], resOptions: [], configLine: this.cSectionStart };
    let inBraces = true;
    if (byAddress) {
      const address = this.parseAddressBody();
      host.address = address;
      this.uniq('IP', `${address.host}:${address.port}`);
      host.names = [address.family === 'ipv6' ? `ipv6 [${address.host}]:${address.port}` : `${address.host}:${address.port}`];
      const t = this.lex();
      if (t === 0x3b) inBraces = false;
      else if (t !== 0x7b) this.expectedGot('{ | ;', t);
    }
    for (const h of host.names) this.upr('host section', `${res.name}: on ${h}`);
    res.hosts.push(host);

    while (inBraces) {
      const token = this.lex();
      this.fline = this.line;
      let statement: string | undefined;
      switch (token) {
        case Tk.DISK:
          statement = 'disk';
          break;
        case Tk.DEVICE:
          statement = 'device';
          break;
        case Tk.META_DISK:
        case Tk.FLEX_META_DISK:
          statement = 'meta-disk';
          break;
        case Tk.ADDRESS:
        case Tk.ALT_ADDRESS: {
          const alt = token === Tk.ALT_ADDRESS;
          if (host.byAddress) {
            this.fatal(`${this.fileName}:${this.fline}: address statement not allowed for floating {} host sections\n`);
          }
          for (const h of host.names) {
            this.upr(alt ? 'alt-address statement' : 'address statement', `${res.name}:${h}:${alt ? 'alt-address' : 'address'}`);
          }
          const address = this.parseAddress(host.names);
          // drbdadm range-checks the port a second time here (and reports it twice).
          this.rangeCheckValue(PORT_RANGE, 'port', address.port);
          if (alt) {
            host.altAddress = address;
            host.altAddressAt = this.here();
          }
          else host.address = address;
          break;
        }
        case Tk.PROXY:
          this.fatal(`${this.fileName}:${this.line}: udrbd: 'proxy' sections are not supported.\n`);
        case Tk.VOLUME: {
          const vnr = atoi(this.expInteger().value);
          insertSorted(host.volumes, this.parseVolume(vnr, host.names));
          break;
        }
        case Tk.OPTIONS:
          this.expChar('{');
          host.resOptions = this.parseOptions(0, 0, Tk.RES_OPTION);
          break;
        case 0x7d:
          inBraces = false;
          break;
        default:
          this.expected('disk | device | address | meta-disk | flexible-meta-disk');
      }
      if (statement !== undefined) {
        for (const h of host.names) this.upr(`${statement} statement`, `${res.name}:${h}:${statement}`);
        if (!this.parseVolumeStatement(this.volume0(host.volumes), host.names, token)) {
          this.expected('disk | device | address | meta-disk | flexible-meta-disk');
        }
      }
    }

    this.inheritVolumes(res.volumes, host);
    for (const vol of host.volumes) {
      if (vol.metaDisk !== undefined && vol.metaDisk !== 'internal') {
        for (const h of host.names) this.uniq('meta-disk', `${h}:${vol.metaDisk}[${vol.metaIndex ?? ''}]`);
      }
    }
    if (!host.address) this.derror(host, res, 'address');
    this.checkVolumesComplete(res, host);
  }

  private checkVolumesComplete(res: ResourceDef, host: HostSection): void {
    let anyImplicit = false;
    let anyNonZero = false;
    for (const vol of host.volumes) {
      anyImplicit ||= vol.implicit;
      anyNonZero ||= vol.vnr !== 0;
      if (vol.device === undefined && vol.minor === -1) this.derror(host, res, 'device');
      if (vol.disk === undefined) this.derror(host, res, 'disk');
      if (vol.metaDisk === undefined) this.derror(host, res, 'meta-disk');
      if (vol.metaIndex === undefined) this.derror(host, res, 'meta-index');
    }
    if (anyImplicit && anyNonZero) {
      this.invalid(`${this.fileName}:${this.line}: in resource ${res.name}: you must not mix implicit and explicit volumes\n`);
    }
  }

  private checkVolumesHosts(res: ResourceDef): void {
    const first = res.hosts[0];
    if (!first) return;
    for (const other of res.hosts.slice(1)) {
      const a = first.volumes;
      const b = other.volumes;
      let i = 0;
      let j = 0;
      const n1 = first.names.join(' ');
      const n2 = other.names.join(' ');
      while (i < a.length || j < b.length) {
        while (i < a.length && (j >= b.length || a[i]!.vnr < b[j]!.vnr)) {
          this.invalid(`${this.fileName}:${this.line}: in resource ${res.name}, on ${n1} { ... }: volume ${a[i]!.vnr} not defined on ${n2}\n`);
          i++;
        }
        while (j < b.length && (i >= a.length || a[i]!.vnr > b[j]!.vnr)) {
          this.invalid(`${this.fileName}:${this.line}: in resource ${res.name}, on ${n1} { ... }: volume ${b[j]!.vnr} missing (present on ${n2})\n`);
          j++;
        }
        if (i < a.length && j < b.length && a[i]!.vnr === b[j]!.vnr) {
          if (a[i]!.implicit !== b[j]!.implicit) {
            this.invalid(`${this.fileName}:${this.line}: in resource ${res.name}, on ${n1} resp. ${n2}: volume ${a[i]!.vnr} must not be implicit on one but not the other\n`);
          }
          i++;
          j++;
        }
      }
    }
  }
}

const RESOURCE_EXPECTED = 'protocol | on | disk | net | syncer | startup | handlers | ignore-on | stacked-on-top-of';

function newVolume(vnr: number, implicit: boolean): VolumeDef {
  return { vnr, implicit, minor: -1, diskOptions: [] };
}

function insertSorted(volumes: VolumeDef[], vol: VolumeDef): void {
  const at = volumes.findIndex((v) => v.vnr > vol.vnr);
  if (at < 0) volumes.push(vol);
  else volumes.splice(at, 0, vol);
}

function deprecatedAlias(name: string, token: number): string {
  if (token === Tk.HANDLER_OPTION && name === 'outdate-peer') return 'fence-peer';
  if (token === Tk.DISK_OPTION && name === 'rate') return 'resync-rate';
  if (token === Tk.DISK_OPTION && name === 'after') return 'resync-after';
  return name;
}

/** C atoi: leading digits, 0 when none. */
function atoi(text: string): number {
  const m = /^\s*[+-]?[0-9]+/.exec(text);
  return m ? Number.parseInt(m[0], 10) : 0;
}

/** dt_minor_of_dev for a path that does not exist: the trailing digits of /dev/drbdN, else -1. */
function minorOfDevice(device: string): number {
  const m = /^\/dev\/drbd([0-9]+)$/.exec(device);
  return m ? Number.parseInt(m[1]!, 10) : -1;
}

/** addr_scope_local: loopback addresses are only unique per host. */
function addrScopeLocal(host: string): boolean {
  return host.startsWith('127.') || host === '::1';
}

function realpathOr(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** drbdadm's canonify_path: the directory part with symlinks resolved, the file name as written. */
function canonify(p: string): string {
  const abs = path.resolve(p);
  try {
    return path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}
