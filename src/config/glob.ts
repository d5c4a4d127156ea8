/**
 * config/glob — the small part of glob(3) that `include` needs: `*`, `?` and
 * `[...]` within path segments, no brace expansion, no `**`, dot files only when
 * the pattern segment starts with a dot, results sorted. Paths are returned as
 * glob(3) returns them (relative patterns stay relative to `baseDir`).
 */
import fs from 'node:fs';
import path from 'node:path';

/** Upper bound on matches of one include pattern, so a runaway glob cannot exhaust memory. */
const GLOB_MATCHES_MAX = 4096;

function hasMagic(segment: string): boolean {
  return /[*?[]/.test(segment);
}

function segmentRegExp(segment: string): RegExp {
  let re = '';
  for (let i = 0; i < segment.length; i++) {
    const ch = segment[i]!;
    if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close < 0) {
        re += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, close);
      if (body.startsWith('!')) body = `^${body.slice(1)}`;
      re += `[${body.replace(/\\/g, '\\\\')}]`;
      i = close;
    } else re += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Expand `pattern` (absolute, or relative to `baseDir`). Returns [] when nothing matches. */
export function globPaths(pattern: string, baseDir: string): string[] {
  if (!hasMagic(pattern)) {
    return fs.existsSync(path.resolve(baseDir, pattern)) ? [pattern] : [];
  }
  const absolute = pattern.startsWith('/');
  const segments = pattern.split('/').filter((s, i) => s !== '' || i === 0);
  let current: string[] = [absolute ? '/' : ''];
  for (const [index, segment] of segments.entries()) {
    if (index === 0 && absolute) continue;
    const next: string[] = [];
    for (const prefix of current) {
      const dir = path.resolve(baseDir, prefix === '' ? '.' : prefix);
      const join = (name: string) => (prefix === '' ? name : prefix.endsWith('/') ? prefix + name : `${prefix}/${name}`);
      if (!hasMagic(segment)) {
        if (fs.existsSync(path.join(dir, segment))) next.push(join(segment));
        continue;
      }
      let names: string[];
      try {
        names = fs.readdirSync(dir);
      } catch {
        continue;
      }
      const re = segmentRegExp(segment);
      for (const name of names.sort()) {
        if (name.startsWith('.') && !segment.startsWith('.')) continue;
        if (re.test(name)) next.push(join(name));
        if (next.length > GLOB_MATCHES_MAX) throw new Error(`include pattern '${pattern}' matches more than ${GLOB_MATCHES_MAX} files`);
      }
    }
    current = next;
  }
  return current.sort();
}
