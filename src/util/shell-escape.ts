/**
 * util/shell-escape — drbd-utils' shell_escape as drbdadm and drbdsetup print
 * values (`-d` lines, `sh-status`, `--version`): letters, digits and
 * `%+-./:=@_` stay as they are, every other character gets a backslash, so
 * sh reads the word back unchanged. Checked against drbdadm-84 -d: a comma
 * and `~!^#` are escaped, `%+@=:/.-_` are not.
 */
export function shellEscape(value: string): string {
  return value.replace(/[^A-Za-z0-9%+\-./:=@_]/g, (c) => `\\${c}`);
}
