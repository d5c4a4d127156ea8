/**
 * test/fuzz/target-config — fuzzes the DRBD 8.4 configuration parser
 * (src/config/): the repository's valid example configs, mutated byte-wise and
 * with configuration tokens spliced in, are loaded from a file; every failure
 * must be a UdrbdError (drbdadm's message and exit code), and a config that
 * loads must also resolve, be judged for option support and dump for each of
 * its hosts with UdrbdError as the only failure.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bindNode, checkOptionSupport, dumpConfig, loadConfig, resolveResource, type DrbdConfig } from '../../src/config/index.js';
import { UdrbdError } from '../../src/util/errors.js';
import { mutatedInputs, type Sample } from './mutate.js';
import { type FuzzBudget, type PropertyResult, runProperty, withinHangBound } from './runner.js';

const CORPUS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'corpus', 'config');

/** Valid configs without include statements (a mutated include could read any file on the machine). */
function samples(): Sample[] {
  return fs
    .readdirSync(CORPUS_DIR)
    .filter((f) => f.endsWith('.conf') && !f.startsWith('bad-'))
    .map((f) => fs.readFileSync(path.join(CORPUS_DIR, f)))
    .filter((text) => !text.includes('include'))
    .map((bytes) => ({ bytes }));
}

const TOKENS = [
  '{', '}', ';', '"', '\\', '#', '\n', ' ', 'resource r9 {', 'on ', 'volume 0 {', 'net {', 'disk {', 'startup {', 'handlers {',
  'floating ', 'address ', 'ipv6 [::1]:7789', '127.0.0.1:', '65536', '99999999999999999999999', '-1', '0x10', '1G', '4T', 's',
  'minor ', 'device ', 'meta-disk ', 'flexible-meta-disk ', 'internal', '[0]', 'stacked-on-top-of ', 'common {', 'skip {',
  'protocol ', 'ko-count ', 'al-extents ', 'after-sb-0pri ', 'become-primary-on ', 'yes', 'no', '"\\"', '""', '\u00e9', '\u0000',
];

function hostNames(config: DrbdConfig): string[] {
  const names = new Set<string>(['alpha']);
  for (const res of config.resources) for (const host of res.hosts) for (const name of host.names) names.add(name);
  return [...names].slice(0, 8);
}

/** Runs `step`; a UdrbdError is a clean refusal, anything else escapes. */
function refusedCleanly(step: () => void): void {
  try {
    step();
  } catch (error) {
    if (!(error instanceof UdrbdError)) throw error;
  }
}

export function fuzzConfig(budget: FuzzBudget): PropertyResult[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'udrbd-fz-conf-'));
  const file = path.join(dir, 'drbd.conf');
  try {
    return [
      runProperty(
        'config: mutated configs load or fail with UdrbdError; loaded ones resolve, are judged and dump per host',
        mutatedInputs(samples(), { tokens: TOKENS, randomBytesMax: 256 }),
        (text) => {
          fs.writeFileSync(file, text);
          withinHangBound('config parser', () => {
            let config: DrbdConfig;
            try {
              config = loadConfig(file);
            } catch (error) {
              if (error instanceof UdrbdError) return;
              throw error;
            }
            for (const node of hostNames(config)) {
              refusedCleanly(() => {
                const { bindings } = bindNode(config, node);
                dumpConfig(config, bindings, { nodeName: node, expand: true, verbose: false });
              });
              for (const res of config.resources) {
                refusedCleanly(() => void resolveResource(config, res.name, node));
                refusedCleanly(() => void checkOptionSupport(config, res.name, node));
              }
            }
          });
        },
        budget,
      ),
    ];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
