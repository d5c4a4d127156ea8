#!/usr/bin/env bash
# Builds native/udrbd-io/build/udrbd_io.node with the C compiler and the
# Node-API headers that ship with Node (<node prefix>/include/node). No
# node-gyp, no network, no library beyond libc. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
node_include="${node_prefix}/include/node"
[ -f "${node_include}/node_api.h" ] || node_include=/usr/include/node
if [ ! -f "${node_include}/node_api.h" ]; then
  echo "udrbd-io: node_api.h not found (Node headers); install Node with its include/ directory" >&2
  exit 1
fi
mkdir -p "${here}/build"
${CC:-cc} -O2 -g -Wall -Wextra -Werror -fPIC -shared -std=gnu11 \
  -DNODE_GYP_MODULE_NAME=udrbd_io -DNAPI_VERSION=8 \
  -I"${node_include}" \
  -o "${here}/build/udrbd_io.node.tmp" "${here}/udrbd_io.c" -lpthread
mv "${here}/build/udrbd_io.node.tmp" "${here}/build/udrbd_io.node"
echo "udrbd-io: built ${here}/build/udrbd_io.node"
