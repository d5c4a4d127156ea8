#!/usr/bin/env bash
# Install what udrbd and its test suite need on Debian 12, as root:
# the Debian tools the tests use as oracles and real clients, then npm ci.
# Idempotent: skips apt entirely when every package is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  drbd-utils        # real drbdmeta / drbdadm-84: oracles for metadata and config
  xfsprogs          # mkfs.xfs, xfs_repair
  fuse3 libfuse2    # FUSE frontend (fuse-native links libfuse.so.2)
  libfuse3-dev pkg-config build-essential # native/udrbd-fuse3 addon (libfuse 3: async direct I/O, 1 MiB requests)
  nbdkit libnbd-bin # NBD anchor and clients (nbdinfo, nbdcopy)
  python3-libnbd    # nbdsh (scripted NBD requests in the NBD tests)
  qemu-utils fio    # qemu-img compare, fio with the nbd engine
  nbd-client        # kernel NBD attach where the kernel has nbd
  util-linux iproute2 procps psmisc
  groff-base systemd bsdutils python3 # man page lint, systemd-analyze verify, logger(1) for UDRBD_SYSLOG, syslog receiver in tests
  resource-agents libxml2-utils pacemaker-cli-utils # OCF agent: ocf-shellfuncs, ocf-tester, xmllint --valid, crm_master
  pacemaker corosync crmsh # the two-node cluster tests: real Pacemaker + Corosync in namespaces
  rabbitmq-server python3-pika # RabbitMQ on a udrbd volume: the broker and a confirming publisher
  iptables conntrack kmod # partitions inside a namespace, connection resets, modprobe for Filesystem
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
modprobe fuse 2>/dev/null || true
modprobe loop 2>/dev/null || true
npm ci --no-audit --no-fund
native/udrbd-fuse3/build.sh
native/udrbd-io/build.sh
npm run build
