#!/usr/bin/env bash
# scripts/demo.sh — udrbd's two-node demo on one machine, as root, after
# `bash scripts/setup.sh`: two file-backed 512 MiB disks, nodes alpha
# (127.0.0.1:7701) and beta (127.0.0.2:7701), create-md, up, `primary --force`
# on alpha with the initial sync's progress bar, XFS on alpha's /dev/drbd1,
# files written with fsync, a switchover to beta (/dev/drbd2) with the
# checksums verified there, and status tables along the way. Everything
# (mounts, resource processes, loop devices, FUSE mounts, device links, temp
# files) is cleaned up on exit, also on failure or Ctrl-C. Bounded in time:
# each step has its own limit, the whole demo DEMO_TIMEOUT_S. The work dir is
# made under $TMPDIR (default /tmp); UDRBD_DEMO_PORT moves the port (default 7701).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DEMO_TIMEOUT_S=${DEMO_TIMEOUT_S:-600}
SYNC_TIMEOUT_S=300
STEP_TIMEOUT_S=120
RES=demo
PORT=${UDRBD_DEMO_PORT:-7701}
DISK_MIB=512
FILES=8
FILE_MIB=8

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (the volume becomes a real block device: FUSE, loop, mount)"
[ -f dist/cli/udrbdadm.js ] || die "dist/ is missing: run 'bash scripts/setup.sh' first"
for tool in losetup mkfs.xfs mount umount fusermount sha256sum timeout; do
  command -v "$tool" >/dev/null || die "$tool is missing: run 'bash scripts/setup.sh' first"
done
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
[ -e /dev/loop-control ] || modprobe loop 2>/dev/null || true
for dev in /dev/drbd1 /dev/drbd2; do
  [ ! -e "$dev" ] || [ -L "$dev" ] || die "$dev exists and is not a udrbd link; this demo uses /dev/drbd1 and /dev/drbd2"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/udrbd-demo.XXXXXX")
export UDRBD_RUN_DIR=$WORK/run UDRBD_LOG_DIR=$WORK/log
# The kernel device: nbd where the kernel has it, else FUSE + loop.
export UDRBD_FRONTEND=${UDRBD_FRONTEND:-auto}
CONF=$WORK/udrbd.conf
MNT_A=$WORK/mnt-alpha
MNT_B=$WORK/mnt-beta
START=$(date +%s)

adm() { local node=$1; shift; timeout "$STEP_TIMEOUT_S" node "$ROOT/dist/cli/udrbdadm.js" -c "$CONF" --node "$node" "$@"; }
show() { timeout 30 node "$ROOT/scripts/demo/status.mjs" "$1" "$CONF" "$RES" alpha beta; }
check_time() { [ $(( $(date +%s) - START )) -lt "$DEMO_TIMEOUT_S" ] || die "took longer than ${DEMO_TIMEOUT_S}s"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  say "cleaning up"
  for m in "$MNT_A" "$MNT_B"; do
    mountpoint -q "$m" 2>/dev/null && { timeout 60 umount "$m" || timeout 60 umount -l "$m"; }
  done
  for node in alpha beta; do
    [ -S "$UDRBD_RUN_DIR/$RES.$node.sock" ] && timeout 60 node "$ROOT/dist/cli/udrbdadm.js" -c "$CONF" --node "$node" down "$RES" >/dev/null 2>&1
  done
  for node in alpha beta; do
    pidfile=$UDRBD_RUN_DIR/$RES.$node.pid
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
  done
  sleep 0.5
  # Whatever a killed resource process left: loop devices on its FUSE file, the FUSE mount, the links.
  for fusedir in "$UDRBD_RUN_DIR"/frontend/*.fuse; do
    [ -d "$fusedir" ] || continue
    for loop in $(losetup -j "$fusedir/volume" -O NAME -n 2>/dev/null); do losetup -d "$loop"; done
    mountpoint -q "$fusedir" && { fusermount -u -z "$fusedir" || umount -l "$fusedir"; }
  done
  for dev in /dev/drbd1 /dev/drbd2; do
    [ -L "$dev" ] && case "$(readlink "$dev")" in /dev/loop*|/dev/nbd*) rm -f "$dev";; esac
  done
  if grep -q " $WORK" /proc/self/mounts; then
    echo "demo: something is still mounted under $WORK; left in place" >&2
  else
    rm -rf "$WORK"
  fi
  [ "$rc" -eq 0 ] && echo "demo finished: everything cleaned up" || echo "demo FAILED (exit $rc); logs were in $UDRBD_LOG_DIR" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "two file-backed ${DISK_MIB} MiB disks and a configuration (alpha 127.0.0.1:$PORT, beta 127.0.0.2:$PORT)"
mkdir -p "$MNT_A" "$MNT_B"
truncate -s "${DISK_MIB}M" "$WORK/alpha.img" "$WORK/beta.img"
cat > "$CONF" <<EOF
resource $RES {
  net { protocol C; connect-int 1; ping-int 2; ping-timeout 10; }
  disk { c-fill-target 4M; c-max-rate 100M; resync-rate 100M; }
  on alpha {
    device /dev/drbd1 minor 1;
    disk $WORK/alpha.img;
    address 127.0.0.1:$PORT;
    meta-disk internal;
  }
  on beta {
    device /dev/drbd2 minor 2;
    disk $WORK/beta.img;
    address 127.0.0.2:$PORT;
    meta-disk internal;
  }
}
EOF
cat "$CONF"

say "create-md on both nodes"
adm alpha create-md --force "$RES"
adm beta create-md --force "$RES"

say "up on both nodes"
adm alpha up "$RES"
adm beta up "$RES"
adm alpha wait-connect -t 60 "$RES"
show table

say "primary --force on alpha: initial full sync alpha -> beta"
adm alpha primary --force "$RES"
show proc
deadline=$(( $(date +%s) + SYNC_TIMEOUT_S ))
while :; do
  ds=$(adm alpha dstate "$RES")
  [ "$ds" = "UpToDate/UpToDate" ] && break
  [ "$(date +%s)" -lt "$deadline" ] || die "initial sync did not finish within ${SYNC_TIMEOUT_S}s (dstate $ds)"
  # alpha's progress lines from /proc/drbd: the bar, then finish/speed
  show proc | awk '/^ 1:/{a=1} /^ 2:/{a=0} a && /sync.ed:|finish:/' | paste -sd' ' | tr -s '\t' ' '
  sleep 2
done
show proc
check_time

say "XFS on alpha's /dev/drbd1 -> $(readlink /dev/drbd1)"
timeout "$STEP_TIMEOUT_S" mkfs.xfs -q /dev/drbd1
mount /dev/drbd1 "$MNT_A"
for i in $(seq 1 "$FILES"); do
  head -c "$((FILE_MIB * 1024 * 1024))" /dev/urandom > "$MNT_A/file$i"
done
echo "udrbd demo written on alpha at $(date -u +%FT%TZ)" > "$MNT_A/hello.txt"
timeout "$STEP_TIMEOUT_S" sync "$MNT_A"/*
(cd "$MNT_A" && sha256sum file* hello.txt) > "$WORK/checksums"
ls -l "$MNT_A"
show table
check_time

say "switchover: umount on alpha, secondary alpha, primary beta, mount beta's /dev/drbd2"
umount "$MNT_A"
adm alpha secondary "$RES"
# A link left behind (even a dangling one) would point the next mount at a stale device.
if [ -e /dev/drbd1 ] || [ -L /dev/drbd1 ]; then die "/dev/drbd1 still exists after alpha's demotion ($(readlink /dev/drbd1 || true))"; fi
echo "alpha is Secondary: /dev/drbd1 is gone"
adm beta primary "$RES"
echo "beta is Primary: /dev/drbd2 -> $(readlink /dev/drbd2)"
mount /dev/drbd2 "$MNT_B"
(cd "$MNT_B" && sha256sum -c "$WORK/checksums")
cat "$MNT_B/hello.txt"
show table
show proc
check_time

say "beta Secondary, both nodes down"
umount "$MNT_B"
adm beta secondary "$RES"
if [ -e /dev/drbd2 ] || [ -L /dev/drbd2 ]; then die "/dev/drbd2 still exists after beta's demotion ($(readlink /dev/drbd2 || true))"; fi
show table
adm alpha down "$RES"
adm beta down "$RES"
echo "checksums matched on beta after the switchover"
