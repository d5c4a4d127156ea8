/**
 * test/helpers/boot-harness — what the boot and status-screen tests share:
 * a Cluster whose config uses this suite's minors (51–59) and a `startup`
 * section, running udrbd's init script (packaging/init.d/udrbd) on a node
 * with UDRBDADM / UDRBDADM_ARGS pointing at the built udrbdadm and the
 * test's config, and the oracle: drbd-utils' own drbd_pretty_status,
 * extracted at test time from the installed /etc/init.d/drbd (never copied
 * into the repo), run in bash over a /proc/drbd text with a `drbdadm` on
 * PATH that runs udrbdadm for the test's config and node.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Cluster, ROOT, UDRBDADM, type AdmResult, type NodeName } from './cluster.js';

export const INIT_SCRIPT = path.join(ROOT, 'packaging', 'init.d', 'udrbd');
export const DRBD_INIT_SCRIPT = '/etc/init.d/drbd';

export interface BootConfig {
  minors: Record<NodeName, number>;
  /** Lines inside `startup { }` (none: no startup section). */
  startup?: string[];
  /** Whole extra resource blocks appended to the config. */
  extraResources?: string;
  /** Any other change to each config file's text. */
  edit?: (text: string) => string;
}

/** Rewrites every config file of the cluster: our minors, a startup section, extra resources. */
export function patchConfig(c: Cluster, boot: BootConfig): void {
  const files = new Set([c.configPath, ...Object.values(c.configPaths)]);
  for (const file of files) {
    let text = fs.readFileSync(file, 'utf8');
    text = text.replace('device /dev/drbd10 minor 10;', `device /dev/drbd${boot.minors.alpha} minor ${boot.minors.alpha};`);
    text = text.replace('device /dev/drbd11 minor 11;', `device /dev/drbd${boot.minors.beta} minor ${boot.minors.beta};`);
    if (boot.startup) text = text.replace(`resource ${c.resource} {\n`, `resource ${c.resource} {\n  startup { ${boot.startup.join(' ')} }\n`);
    if (boot.extraResources) text += boot.extraResources;
    if (boot.edit) text = boot.edit(text);
    fs.writeFileSync(file, text);
  }
}

export interface RunResult extends AdmResult {
  elapsedMs: number;
}

/** Runs a command with the cluster's environment; never throws on a non-zero exit. */
export function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { timeoutMs?: number; input?: string; onStdout?: (text: string, write: (s: string) => void) => void } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    // A child that exits before reading its input closes the pipe: not an error of the test.
    child.stdin.on('error', () => undefined);
    const write = (s: string): void => {
      child.stdin.write(s);
    };
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      options.onStdout?.(stdout, write);
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    if (options.input !== undefined) child.stdin.end(options.input);
    const timeoutMs = options.timeoutMs ?? 120_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ exitCode: code ?? -1, stdout, stderr, elapsedMs: Date.now() - started });
    });
  });
}

/** The node's config file (a node name the cluster does not know gets the shared one). */
function configOf(c: Cluster, node: string): string {
  return node === 'alpha' || node === 'beta' ? c.configPaths[node] : c.configPath;
}

/** The environment the init script runs with on `node`. */
export function initEnv(c: Cluster, node: string): NodeJS.ProcessEnv {
  return {
    ...c.env,
    UDRBDADM: `${process.execPath} ${UDRBDADM}`,
    UDRBDADM_ARGS: `-c ${configOf(c, node)} --node ${node}`,
    // Plain echo fallbacks: the test compares output, not the distribution's decoration.
    UDRBD_NO_LSB_FUNCTIONS: '1',
  };
}

/** `packaging/init.d/udrbd ACTION` on node, without a terminal. */
export function initScript(c: Cluster, node: string, action: string, timeoutMs?: number): Promise<RunResult> {
  return run('bash', [INIT_SCRIPT, action], initEnv(c, node), { timeoutMs, input: '' });
}

/**
 * The init script under a pseudo-terminal (util-linux `script`): stdin and
 * stdout of the script are the pty; `onStdout` sees everything printed so
 * far and may type (write) into the terminal.
 */
export function initScriptOnTty(
  c: Cluster,
  node: NodeName,
  action: string,
  onStdout: (text: string, type: (s: string) => void) => void,
  timeoutMs?: number,
): Promise<RunResult> {
  const env = initEnv(c, node);
  const command = `bash ${INIT_SCRIPT} ${action}`;
  return run('script', ['-qfec', command, '/dev/null'], env, { timeoutMs, onStdout });
}

export function requireOracle(): string {
  if (!fs.existsSync(DRBD_INIT_SCRIPT)) throw new Error(`test prerequisite missing: drbd-utils' ${DRBD_INIT_SCRIPT} (apt-get install drbd-utils)`);
  const text = fs.readFileSync(DRBD_INIT_SCRIPT, 'utf8');
  const start = text.indexOf('drbd_pretty_status()');
  const end = text.indexOf('\n}\n', start);
  if (start < 0 || end < 0) throw new Error(`${DRBD_INIT_SCRIPT} has no drbd_pretty_status() function`);
  return text.slice(start, end + 3);
}

/**
 * drbd-utils' drbd_pretty_status over `procText`, with `drbdadm` = udrbdadm
 * for node; returns what `/etc/init.d/drbd status` would print (its first
 * line plus the function's output, stderr dropped as the script does).
 */
export async function oracleStatus(c: Cluster, node: string, procText: string): Promise<string> {
  const fn = requireOracle();
  const dir = fs.mkdtempSync(path.join(c.dir, 'oracle-'));
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(dir, 'pretty.sh'), fn);
  fs.writeFileSync(path.join(dir, 'proc-drbd'), procText);
  fs.writeFileSync(path.join(bin, 'drbdadm'), `#!/bin/sh\nexec ${process.execPath} ${UDRBDADM} -c ${configOf(c, node)} --node ${node} "$@"\n`, { mode: 0o755 });
  const env = { ...c.env, PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}` };
  const script = `. "$1/pretty.sh"; echo "drbd driver loaded OK; device status:"; drbd_pretty_status "$1/proc-drbd" 2>/dev/null`;
  const r = await run('bash', ['-c', script, 'oracle', dir], env, { input: '' });
  if (r.exitCode !== 0) throw new Error(`drbd_pretty_status failed (${r.exitCode}): ${r.stderr}`);
  return r.stdout;
}

/** Replaces the values that really vary between runs: the per-minor counters. */
export function normaliseCounters(text: string): string {
  return text.replace(/ns:\d+ nr:\d+ dw:\d+ dr:\d+ al:\d+ bm:\d+ lo:\d+ pe:\d+ ua:\d+ ap:\d+ ep:\d+/g, 'ns:N nr:N dw:N dr:N al:N bm:N lo:N pe:N ua:N ap:N ep:N');
}
