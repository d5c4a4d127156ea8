#!/usr/bin/env bash
# Builds native/udrbd-fuse3/build/udrbd_fuse3.node with the C compiler and
# libfuse3-dev from Debian and the Node-API headers that ship with Node
# (<node prefix>/include/node). No node-gyp, no network. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
node_include="${node_prefix}/include/node"
[ -f "${node_include}/node_api.h" ] || node_include=/usr/include/node
if [ ! -f "${node_include}/node_api.h" ]; then
  echo "udrbd-fuse3: node_api.h not found (Node headers); install Node with its include/ directory" >&2
  exit 1
fi
if ! pkg-config --exists fuse3; then
  echo "udrbd-fuse3: libfuse3 development files missing (apt-get install libfuse3-dev pkg-config)" >&2
  exit 1
fi
mkdir -p "${here}/build"
${CC:-cc} -O2 -g -Wall -Wextra -Werror -fPIC -shared -std=gnu11 \
  -DNODE_GYP_MODULE_NAME=udrbd_fuse3 -DNAPI_VERSION=8 \
  -I"${node_include}" $(pkg-config --cflags fuse3) \
  -o "${here}/build/udrbd_fuse3.node.tmp" "${here}/udrbd_fuse3.c" \
  $(pkg-config --libs fuse3) -lpthread
mv "${here}/build/udrbd_fuse3.node.tmp" "${here}/build/udrbd_fuse3.node"
echo "udrbd-fuse3: built ${here}/build/udrbd_fuse3.node"
