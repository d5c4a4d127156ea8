/**
 * cli/dry-run's rules without processes: a verb with no plan is refused
 * under -d (so a new verb cannot act for real by being forgotten), a verb
 * that declared its own dry run reaches its action, configuration-only
 * verbs run, and values are shell-escaped as drbdadm prints them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { declareOwnDryRun, interceptDryRun, printInsteadOfActing, shellEscape } from '../../src/cli/dry-run.js';
import type { CliContext } from '../../src/cli/context.js';
import { UdrbdError } from '../../src/util/errors.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function config(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sf-dry-'));
  dirs.push(dir);
  const file = path.join(dir, 'r.conf');
  fs.writeFileSync(file, [
    'resource sfu { net { shared-secret "a b$c"; }',
    '  on alpha { device minor 41; disk /tmp/sfu-a.img; address 127.0.0.1:7912; meta-disk internal; }',
    '  on beta { device minor 42; disk /tmp/sfu-b.img; address 127.0.0.2:7912; meta-disk internal; } }',
    '',
  ].join('\n'));
  return file;
}

/** A program with verbs whose actions record that they ran, behind the dry-run hook. */
async function run(verb: string, dryRun: boolean): Promise<{ ran: string[]; out: string; error?: UdrbdError }> {
  const ran: string[] = [];
  let out = '';
  const ctx: CliContext = { configPath: config(), nodeName: 'alpha', backendOptions: [], dryRun, verbose: false, out: (t) => (out += t), err: () => undefined };
  const program = new Command('udrbdadm').exitOverride();
  for (const name of ['frobnicate', 'sfu-own', 'down', 'sh-dev', 'connect', 'proc-drbd', 'init-status']) {
    program.command(name).argument('[resources...]').action(() => void ran.push(name));
  }
  program.hook('preAction', (_p, cmd) => interceptDryRun(ctx, cmd));
  try {
    await program.parseAsync([verb, 'sfu'], { from: 'user' });
    return { ran, out };
  } catch (err) {
    return { ran, out, error: err as UdrbdError };
  }
}

describe('dry-run mechanism', () => {
  it('runs the read-only 8.4 screens (proc-drbd, init-status) under -d as they are', async () => {
    expect((await run('proc-drbd', true)).ran).toEqual(['proc-drbd']);
    expect((await run('init-status', true)).ran).toEqual(['init-status']);
    expect((await run('down', true)).ran).toEqual([]);
  });

  it('refuses a verb without a plan under -d instead of running it', async () => {
    const r = await run('frobnicate', true);
    expect(r.ran).toEqual([]);
    expect(r.error?.exitCode).toBe(1);
    expect(r.error?.message).toBe("udrbdadm: -d (dry run) has no plan for 'frobnicate' yet; nothing was done. Run it without -d to act.");
    expect((await run('frobnicate', false)).ran).toEqual(['frobnicate']);
  });

  it('a verb that declared its own dry run reaches its action', async () => {
    declareOwnDryRun('sfu-own');
    expect((await run('sfu-own', true)).ran).toEqual(['sfu-own']);
  });

  it('prints a planned verb and never runs its action; configuration-only verbs run', async () => {
    const down = await run('down', true);
    expect(down.ran).toEqual([]);
    expect(down.out).toBe('drbdsetup-84 down sfu\n');
    expect(down.error?.exitCode).toBe(0);
    expect((await run('sh-dev', true)).ran).toEqual(['sh-dev']);
  });

  it('shell-escapes option values as drbdadm -d does', async () => {
    expect(shellEscape('x y')).toBe('x\\ y');
    expect((await run('connect', true)).out).toBe('drbdsetup-84 connect sfu ipv4:127.0.0.1:7912 ipv4:127.0.0.2:7912 --shared-secret=a\\ b\\$c\n');
  });

  it('guards a control request: under -d it prints instead of acting, and refuses a request without a plan', () => {
    let out = '';
    const ctx: CliContext = { configPath: config(), nodeName: 'alpha', backendOptions: [], dryRun: true, verbose: false, out: (t) => (out += t), err: () => undefined };
    expect(printInsteadOfActing(ctx, 'sfu', 'primary', ['--force'])).toBe(true);
    expect(out).toBe('drbdsetup-84 primary 41 --force\n');
    expect(() => printInsteadOfActing(ctx, 'sfu', 'io.write')).toThrow(/has no plan; nothing was done/);
    expect(printInsteadOfActing({ ...ctx, dryRun: false }, 'sfu', 'primary')).toBe(false);
  });
});
