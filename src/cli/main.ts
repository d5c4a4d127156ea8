/**
 * cli/main — the drbdadm-compatible administration tool. Parses global
 * options, applies drbdadm's `--` convention, and dispatches to the verb
 * modules listed in cli/commands/index.ts. Errors become DRBD's messages and
 * exit codes.
 */
import { Command, CommanderError } from 'commander';
import { commandGroups } from './commands/index.js';
import { moveBackendOptions } from './argv.js';
import { interceptDryRun } from './dry-run.js';
import { NOT_ROOT_MESSAGE, isPermissionError, isRoot, requireRootFor } from './privilege.js';
import { type CliContext, DEFAULT_CONFIG_PATH, defaultNodeName } from './context.js';
import { UdrbdError, ExitCode } from '../util/errors.js';

export async function main(args: readonly string[]): Promise<number> {
  const { argv, backendOptions } = moveBackendOptions(args);
  const program = new Command('udrbdadm');
  program
    .description('administer udrbd resources (DRBD 8.4 drbdadm-compatible)')
    .option('-c, --config-file <file>', 'configuration file', DEFAULT_CONFIG_PATH)
    .option('-n, --node <name>', "this node's name in `on HOST` sections (default: $UDRBD_NODE, then uname -n)")
    .option('-d, --dry-run', 'print the drbdsetup-84/drbdmeta calls drbdadm would make and change nothing, whatever the resource state', false)
    .option('-v, --verbose', 'more output', false)
    .addHelpText(
      'after',
      '\nSafety: -d prints the drbdsetup-84/drbdmeta calls and never acts, on any verb and in any state.\n' +
        'Verbs that touch /run/udrbd, disks or sockets need root ("udrbdadm must run as root", exit 20);\n' +
        'dump, the sh-* config queries and -d work for any user.\n',
    )
    .showHelpAfterError("try 'udrbdadm --help'")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
    });

  let context: CliContext | undefined;
  const getContext = (): CliContext => {
    if (context) return context;
    const opts = program.opts<{ configFile: string; node?: string; dryRun: boolean; verbose: boolean }>();
    context = {
      configPath: opts.configFile,
      nodeName: defaultNodeName(opts.node),
      backendOptions,
      dryRun: opts.dryRun,
      verbose: opts.verbose,
      out: (text) => process.stdout.write(text),
      err: (text) => process.stderr.write(text),
    };
    return context;
  };
  for (const register of commandGroups) register(program, getContext);
  // -d: every verb prints drbdadm's calls instead of acting (cli/dry-run).
  // Then verbs that touch /run/udrbd, disks or sockets need root (cli/privilege).
  program.hook('preAction', (_program, verb) => {
    interceptDryRun(getContext(), verb);
    requireRootFor(verb.name());
  });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? ExitCode.ok : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return ExitCode.ok;
      return ExitCode.usage;
    }
    if (err instanceof UdrbdError) {
      if (err.message) process.stderr.write(err.message.endsWith('\n') ? err.message : `${err.message}\n`);
      return err.exitCode;
    }
    if (isPermissionError(err) && !isRoot()) {
      process.stderr.write(`${NOT_ROOT_MESSAGE} (${(err as Error).message})\n`);
      return ExitCode.fatal;
    }
    process.stderr.write(`udrbdadm: internal error: ${(err as Error).stack ?? String(err)}\n`);
    return ExitCode.fatal;
  }
}

