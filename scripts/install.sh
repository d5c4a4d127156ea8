#!/usr/bin/env bash
# scripts/install.sh — puts udrbd in place on this machine, and takes it away
# again with --uninstall:
#   $PREFIX/sbin/udrbdadm              a wrapper that runs this checkout's dist/ with the node
#                                      found at install time (so `npm run build` here updates it)
#   $PREFIX/share/man/man8/udrbdadm.8  the man page
#   /etc/init.d/udrbd                  the LSB init script (packaging/init.d/udrbd)
#   $SYSTEMD_UNIT_DIR/udrbd.service    boot unit around the init script (installed with it)
#   $SYSTEMD_UNIT_DIR/udrbd@.service   one resource: udrbdadm up / down
#   $OCF_ROOT/resource.d/udrbd/        the Pacemaker (OCF) agent(s): every executable of packaging/ocf/
#   $PREFIX/lib/udrbd/                 the handlers: every executable of packaging/handlers/
#                                      (udrbd-crm-fence-peer.sh, udrbd-crm-unfence-peer.sh)
# Every path lands below $DESTDIR (empty: the real root). What it installs,
# with a sha256 each, goes to the manifest $PREFIX/share/udrbd/install-manifest;
# --uninstall removes exactly those files (a file changed since keeps, with a
# warning) and the directories the install created, if empty. Installing
# over an earlier install replaces it. Existing files not from an earlier
# install are not overwritten without --force.
#
# Usage: [DESTDIR=DIR] [PREFIX=/usr/local] scripts/install.sh [--uninstall] [--force]
# Also: SYSTEMD_UNIT_DIR (/lib/systemd/system), OCF_ROOT (/usr/lib/ocf),
#       NODE (node on PATH) for the wrapper.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/usr/local}"
SYSTEMD_UNIT_DIR="${SYSTEMD_UNIT_DIR:-/lib/systemd/system}"
OCF_ROOT="${OCF_ROOT:-/usr/lib/ocf}"
SBINDIR="$PREFIX/sbin"
HANDLERDIR="$PREFIX/lib/udrbd"
MANIFEST="$PREFIX/share/udrbd/install-manifest"

mode=install
force=no
for arg in "$@"; do
  case "$arg" in
    --uninstall) mode=uninstall ;;
    --force) force=yes ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument '$arg' (try --help)" >&2; exit 1 ;;
  esac
done
for var in PREFIX SYSTEMD_UNIT_DIR OCF_ROOT; do
  case "${!var}" in
    /*) ;;
    *) echo "install.sh: $var must be an absolute path, not '${!var}'" >&2; exit 1 ;;
  esac
done
if [ -n "$DESTDIR" ]; then
  case "$DESTDIR" in /*) ;; *) echo "install.sh: DESTDIR must be an absolute path, not '$DESTDIR'" >&2; exit 1 ;; esac
fi

say() { printf 'install.sh: %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Removes what the manifest at $DESTDIR$MANIFEST lists; quiet=yes prints nothing per file.
uninstall() {
  local quiet="$1" manifest="$DESTDIR$MANIFEST" kind sum path
  if [ ! -f "$manifest" ]; then
    [ "$quiet" = yes ] && return 0
    echo "install.sh: nothing to uninstall: no manifest at $manifest (was it installed with this DESTDIR and PREFIX?)" >&2
    return 1
  fi
  local -a dirs=()
  while read -r kind sum path; do
    case "$kind" in
      file)
        if [ ! -e "$DESTDIR$path" ]; then
          :
        elif [ "$(sha "$DESTDIR$path")" = "$sum" ]; then
          rm -f "$DESTDIR$path"
          [ "$quiet" = yes ] || say "removed $path"
        else
          warn "$path changed since it was installed; left in place (remove it by hand if it is not needed)"
        fi
        ;;
      dir) dirs+=("$sum") ;;
    esac
  done < "$manifest"
  rm -f "$manifest"
  # directories the install created, deepest first (the manifest lists them parent first)
  local i
  for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do
    rmdir "$DESTDIR${dirs[$i]}" 2>/dev/null || true
  done
}

if [ "$mode" = uninstall ]; then
  uninstall no
  [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && systemctl daemon-reload || true
  say "uninstalled"
  exit 0
fi

# ---- install ---------------------------------------------------------------
if [ ! -f "$ROOT/dist/cli/udrbdadm.js" ] || [ ! -f "$ROOT/dist/daemon/udrbd.js" ]; then
  echo "install.sh: $ROOT/dist is not built: run 'npm run build' (or scripts/setup.sh) first" >&2
  exit 1
fi
NODE="${NODE:-$(command -v node || true)}"
if [ -z "$NODE" ] || [ ! -x "$NODE" ]; then
  echo "install.sh: no node executable found (need Node.js >= 20 on PATH, or NODE=/path/to/node)" >&2
  exit 1
fi
case "$ROOT$NODE" in
  *"'"*) echo "install.sh: the checkout path or the node path contains a single quote ('$ROOT', '$NODE'); the wrapper cannot name it" >&2; exit 1 ;;
esac
[ -f "$ROOT/packaging/man/udrbdadm.8" ] || { echo "install.sh: $ROOT/packaging/man/udrbdadm.8 is missing" >&2; exit 1; }

# Files of an earlier install may be replaced; anything else already there needs --force.
declare -A previous=()
if [ -f "$DESTDIR$MANIFEST" ]; then
  while read -r kind _sum path; do [ "$kind" = file ] && previous["$path"]=1; done < "$DESTDIR$MANIFEST"
fi

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT

# source|destination|mode, destinations without DESTDIR
declare -a plan=()
wrapper="$staging/udrbdadm"
cat > "$wrapper" <<WRAPPER
#!/bin/sh
# udrbdadm — installed by $ROOT/scripts/install.sh; runs that checkout's build.
UDRBD_ROOT='$ROOT'
NODE='$NODE'
if [ ! -f "\$UDRBD_ROOT/dist/cli/udrbdadm.js" ]; then
  echo "udrbdadm: \$UDRBD_ROOT/dist/cli/udrbdadm.js is missing: build it there ('npm run build'), or re-run scripts/install.sh from where the checkout is now" >&2
  exit 20
fi
exec "\$NODE" "\$UDRBD_ROOT/dist/cli/udrbdadm.js" "\$@"
WRAPPER
plan+=("$wrapper|$SBINDIR/udrbdadm|0755")
plan+=("$ROOT/packaging/man/udrbdadm.8|$PREFIX/share/man/man8/udrbdadm.8|0644")
if [ -f "$ROOT/packaging/init.d/udrbd" ]; then
  plan+=("$ROOT/packaging/init.d/udrbd|/etc/init.d/udrbd|0755")
  sed "s|@SBINDIR@|$SBINDIR|g" "$ROOT/packaging/systemd/udrbd.service" > "$staging/udrbd.service"
  plan+=("$staging/udrbd.service|$SYSTEMD_UNIT_DIR/udrbd.service|0644")
else
  warn "packaging/init.d/udrbd is not in this checkout: /etc/init.d/udrbd and udrbd.service (which runs it) are not installed"
fi
sed "s|@SBINDIR@|$SBINDIR|g" "$ROOT/packaging/systemd/udrbd@.service" > "$staging/udrbd@.service"
plan+=("$staging/udrbd@.service|$SYSTEMD_UNIT_DIR/udrbd@.service|0644")
# The OCF agent's place: every executable file in packaging/ocf/ becomes $OCF_ROOT/resource.d/udrbd/<name>
# (Pacemaker's ocf:udrbd:<name>); other files there (docs, metadata samples) are not installed.
if [ -d "$ROOT/packaging/ocf" ]; then
  for agent in "$ROOT"/packaging/ocf/*; do
    if [ -f "$agent" ] && [ -x "$agent" ]; then plan+=("$agent|$OCF_ROOT/resource.d/udrbd/$(basename "$agent")|0755"); fi
  done
fi
# The handlers (drbd.conf `handlers { fence-peer ...; }`): every executable of packaging/handlers/.
if [ -d "$ROOT/packaging/handlers" ]; then
  for handler in "$ROOT"/packaging/handlers/*; do
    if [ -f "$handler" ] && [ -x "$handler" ]; then plan+=("$handler|$HANDLERDIR/$(basename "$handler")|0755"); fi
  done
fi

for entry in "${plan[@]}"; do
  dest="${entry#*|}"; dest="${dest%|*}"
  if [ -e "$DESTDIR$dest" ] && [ -z "${previous[$dest]:-}" ] && [ "$force" != yes ]; then
    echo "install.sh: $DESTDIR$dest exists and was not installed by this script; move it away or pass --force" >&2
    exit 1
  fi
done

uninstall yes   # an earlier install of the same DESTDIR/PREFIX

manifest_lines="$staging/manifest"
: > "$manifest_lines"
# Creates DIR (below DESTDIR) and each missing parent, recording the ones it made.
make_dir() {
  local dir="$1"
  [ -d "$DESTDIR$dir" ] && return 0
  # "/" itself below a DESTDIR that does not exist yet: create it (not recorded; never removed)
  if [ "$dir" = / ]; then mkdir -p "$DESTDIR/"; return 0; fi
  make_dir "$(dirname "$dir")"
  mkdir -m 0755 "$DESTDIR$dir"
  printf 'dir %s\n' "$dir" >> "$manifest_lines"
}

for entry in "${plan[@]}"; do
  src="${entry%%|*}"; rest="${entry#*|}"; dest="${rest%|*}"; perm="${rest##*|}"
  make_dir "$(dirname "$dest")"
  install -m "$perm" "$src" "$DESTDIR$dest"
  printf 'file %s %s\n' "$(sha "$DESTDIR$dest")" "$dest" >> "$manifest_lines"
  say "installed $dest"
done
make_dir "$(dirname "$MANIFEST")"
install -m 0644 "$manifest_lines" "$DESTDIR$MANIFEST"
say "manifest: $MANIFEST (scripts/install.sh --uninstall removes what it lists)"
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
