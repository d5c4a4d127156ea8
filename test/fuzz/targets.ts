/**
 * test/fuzz/targets — the list of fuzz targets, in the order both passes run
 * them (`npm test`'s fixed-seed pass and `npm run fuzz`'s timed one).
 */
import type { FuzzBudget, PropertyResult } from './runner.js';
import { fuzzConfig } from './target-config.js';
import { fuzzControl } from './target-control.js';
import { fuzzMeta } from './target-meta.js';
import { fuzzNbd } from './target-nbd.js';
import { fuzzPeerCodec } from './target-peer.js';

export interface FuzzTarget {
  readonly name: string;
  readonly run: (budget: FuzzBudget) => PropertyResult[] | Promise<PropertyResult[]>;
}

export const TARGETS: readonly FuzzTarget[] = [
  { name: 'config', run: fuzzConfig },
  { name: 'meta', run: fuzzMeta },
  { name: 'nbd', run: fuzzNbd },
  { name: 'peer', run: fuzzPeerCodec },
  { name: 'control', run: fuzzControl },
];
