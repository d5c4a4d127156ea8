#!/usr/bin/env bash
# Builds one of the project's Node-API addons, native/DIR/build/MODULE.node
# from native/DIR/MODULE.c, with the C compiler, the Node-API headers that
# ship with Node (<node prefix>/include/node) and the pkg-config packages
# named after it. No node-gyp, no network. Idempotent.
#
#   native/build-addon.sh DIR MODULE [PKG=DEBIAN_DEV_PACKAGE ...]
#   e.g. native/build-addon.sh udrbd-fuse3 udrbd_fuse3 fuse3=libfuse3-dev
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 DIR MODULE [PKG=DEBIAN_DEV_PACKAGE ...]" >&2
  exit 2
fi
dir="$(cd "$(dirname "$0")" && pwd)/$1"
module="$2"
shift 2
node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
node_include="${node_prefix}/include/node"
[ -f "${node_include}/node_api.h" ] || node_include=/usr/include/node
if [ ! -f "${node_include}/node_api.h" ]; then
  echo "${module}: node_api.h not found (Node headers); install Node with its include/ directory" >&2
  exit 1
fi
cflags=()
libs=()
for spec in "$@"; do
  pkg="${spec%%=*}"
  if ! pkg-config --exists "${pkg}"; then
    echo "${module}: development files for '${pkg}' missing (apt-get install ${spec#*=} pkg-config)" >&2
    exit 1
  fi
  read -r -a more <<<"$(pkg-config --cflags "${pkg}")"; cflags+=("${more[@]}")
  read -r -a more <<<"$(pkg-config --libs "${pkg}")"; libs+=("${more[@]}")
done
mkdir -p "${dir}/build"
${CC:-cc} -O2 -g -Wall -Wextra -Werror -fPIC -shared -std=gnu11 \
  -DNODE_GYP_MODULE_NAME="${module}" -DNAPI_VERSION=8 \
  -I"${node_include}" "${cflags[@]}" \
  -o "${dir}/build/${module}.node.tmp" "${dir}/${module}.c" \
  "${libs[@]}" -lpthread
mv "${dir}/build/${module}.node.tmp" "${dir}/build/${module}.node"
echo "${module}: built ${dir}/build/${module}.node"
