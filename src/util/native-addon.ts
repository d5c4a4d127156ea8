/**
 * util/native-addon — finds and loads one of the project's own Node-API
 * addons (native/<name>/build/<file>.node, built by native/<name>/build.sh).
 * Every addon is optional: the caller gets the module or the reason it is not
 * usable, and falls back to plain Node.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** Directories walked up from this file to find the repository root (src/… and dist/… and test builds). */
const ROOT_SEARCH_DEPTH_MAX = 8;

export interface NativeAddonSpec {
  /** Path below the repository root, e.g. native/udrbd-io/build/udrbd_io.node. */
  relativePath: string;
  /** Environment variable that, when set, names the addon file directly. */
  envVar: string;
  /** What to run when it is missing, for the reason text. */
  buildHint: string;
}

/**
 * Where the built addon is: $envVar, else the nearest ancestor of this file
 * holding relativePath, else the working directory's (for copies of src/
 * compiled elsewhere, e.g. an e2e child fixture).
 */
export function nativeAddonPath(spec: NativeAddonSpec): string | null {
  const fromEnv = process.env[spec.envVar];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < ROOT_SEARCH_DEPTH_MAX; depth++) {
    const candidate = path.join(dir, spec.relativePath);
    if (fs.existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  const fromCwd = path.join(process.cwd(), spec.relativePath);
  return fs.existsSync(fromCwd) ? fromCwd : null;
}

/** Outcome per addon (relativePath), so each is looked for once per process. */
const loaded = new Map<string, { addon: unknown; reason: string }>();

/** The addon's exports, or null with the reason it is not usable; the first answer is kept. */
export function loadNativeAddon<T>(spec: NativeAddonSpec): { addon: T | null; reason: string } {
  let outcome = loaded.get(spec.relativePath);
  if (outcome === undefined) {
    outcome = tryLoad(spec);
    loaded.set(spec.relativePath, outcome);
  }
  // The map holds what `require` returned for this spec, typed by its loader.
  return outcome as { addon: T | null; reason: string };
}

function tryLoad(spec: NativeAddonSpec): { addon: unknown; reason: string } {
  const addonPath = nativeAddonPath(spec);
  if (addonPath === null) return { addon: null, reason: `${spec.relativePath} not built (${spec.buildHint})` };
  try {
    const require = createRequire(import.meta.url);
    return { addon: require(addonPath) as unknown, reason: 'loaded' };
  } catch (err) {
    return { addon: null, reason: `cannot load ${addonPath}: ${(err as Error).message}` };
  }
}
