#!/usr/bin/env bash
# demo/rabbitmq/broker.sh — Debian's rabbitmq-server 3.10 by hand, without
# systemd, on one node: `prepare` (a fresh filesystem root chowned to rabbitmq
# once, the Erlang cookie written and fsynced by us), `start` (detached, as the
# rabbitmq user, waits until the broker is ready), `stop`, `running`. It owns
# nothing but the broker's environment; the caller mounts the replicated
# filesystem at RQ_DATA and runs this inside the node (its namespaces).
#
# Environment (defaults in brackets):
#   RQ_DATA    the broker's data dir = the udrbd XFS mount, rabbitmq's HOME,
#              RABBITMQ_MNESIA_BASE=$RQ_DATA/mnesia        [/var/lib/rabbitmq]
#   RQ_STATE   per-node dir, NOT on the replicated disk: log dir, pid file
#                                                          [/run/udrbd-rabbitmq]
#   RQ_START_TIMEOUT_S  how long `start` waits for the broker to be ready [120]
set -euo pipefail

DATA=${RQ_DATA:-/var/lib/rabbitmq}
STATE=${RQ_STATE:-/run/udrbd-rabbitmq}
START_TIMEOUT_S=${RQ_START_TIMEOUT_S:-120}
STOP_TIMEOUT_S=60
NODENAME=rabbit@localhost
RMQ_BIN=/usr/lib/rabbitmq/bin
# A fixed cookie is fine here: the broker listens on the node's loopback only.
COOKIE=UDRBDRABBITMQDEMOCOOKIE

die() { echo "broker.sh: $*" >&2; exit 1; }

# Runs a RabbitMQ script as the rabbitmq user with the node's environment.
as_rabbitmq() {
  setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
    env HOME="$DATA" \
      RABBITMQ_NODENAME="$NODENAME" \
      RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
      RABBITMQ_MNESIA_BASE="$DATA/mnesia" \
      RABBITMQ_LOG_BASE="$STATE/log" \
      RABBITMQ_PID_FILE="$STATE/rabbit.pid" \
      "$@"
}

prepare() {
  mountpoint -q "$DATA" || die "$DATA is not a mount point: mount the udrbd volume there first"
  chown rabbitmq:rabbitmq "$DATA"
  chmod 750 "$DATA"
  local cookie=$DATA/.erlang.cookie
  if [ ! -s "$cookie" ]; then
    # Erlang writes its cookie without fsync; a crash soon after the first
    # boot can leave it empty on the peer. Write it ourselves, durably.
    rm -f "$cookie"
    printf '%s' "$COOKIE" > "$cookie"
    chown rabbitmq:rabbitmq "$cookie"
    chmod 400 "$cookie"
    sync "$cookie"          # fsync(2) of the file
    sync "$DATA"            # fsync(2) of the directory entry
  fi
}

start() {
  mountpoint -q "$DATA" || die "$DATA is not a mount point: mount the udrbd volume there first"
  [ -s "$DATA/.erlang.cookie" ] || die "$DATA/.erlang.cookie is missing or empty: run '$0 prepare' on the Primary once"
  mkdir -p "$STATE/log"
  chown rabbitmq:rabbitmq "$STATE" "$STATE/log"
  rm -f "$STATE/rabbit.pid"
  # -detached returns at once; the broker writes its pid file when it runs.
  ( cd "$DATA" && as_rabbitmq "$RMQ_BIN/rabbitmq-server" -detached ) > "$STATE/log/startup.out" 2>&1 \
    || die "rabbitmq-server -detached failed: $(tail -5 "$STATE/log/startup.out")"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until [ -s "$STATE/rabbit.pid" ]; do
    [ $SECONDS -lt $deadline ] || die "no pid file $STATE/rabbit.pid after ${START_TIMEOUT_S}s; see $STATE/log"
    sleep 0.2
  done
  ( cd "$DATA" && as_rabbitmq timeout "$START_TIMEOUT_S" "$RMQ_BIN/rabbitmqctl" -n "$NODENAME" wait "$STATE/rabbit.pid" --timeout "$START_TIMEOUT_S" ) > "$STATE/log/wait.out" 2>&1 \
    || die "broker not ready (waited at most ${START_TIMEOUT_S}s): $(tail -3 "$STATE/log/wait.out")
--- $STATE/log/$NODENAME.log (last lines):
$(grep -v '^\s*$' "$STATE/log/$NODENAME.log" 2>/dev/null | tail -25)"
  # After an unclean stop mnesia repairs and rewrites its DETS files
  # (schema.DAT, ...) without fsync; a second power cut before writeback
  # (~30 s) then leaves schema.DAT empty and the broker cannot start again.
  # Flush the filesystem once the broker is up.
  sync -f "$DATA"
}

stop() {
  [ -s "$STATE/rabbit.pid" ] || return 0
  local pid
  pid=$(cat "$STATE/rabbit.pid")
  ( cd "$DATA" && as_rabbitmq timeout "$STOP_TIMEOUT_S" "$RMQ_BIN/rabbitmqctl" -n "$NODENAME" stop "$STATE/rabbit.pid" ) > "$STATE/log/stop.out" 2>&1 \
    || die "rabbitmqctl stop failed: $(tail -5 "$STATE/log/stop.out")"
  ! kill -0 "$pid" 2>/dev/null || die "broker pid $pid still runs after rabbitmqctl stop"
  rm -f "$STATE/rabbit.pid"
  # epmd is started by the broker and outlives it: ask this network
  # namespace's epmd (127.0.0.1:4369) to exit; it holds no data files.
  epmd -kill > /dev/null 2>&1 || true
}

running() {
  [ -s "$STATE/rabbit.pid" ] && kill -0 "$(cat "$STATE/rabbit.pid")" 2>/dev/null
}

case ${1:-} in
  prepare) prepare ;;
  start) start ;;
  stop) stop ;;
  running) running ;;
  *) echo "usage: $0 prepare|start|stop|running" >&2; exit 2 ;;
esac
