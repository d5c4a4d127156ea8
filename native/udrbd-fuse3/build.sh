#!/usr/bin/env bash
# Builds native/udrbd-fuse3/build/udrbd_fuse3.node (needs libfuse3-dev and
# pkg-config from Debian; see native/build-addon.sh).
exec "$(dirname "$0")/../build-addon.sh" udrbd-fuse3 udrbd_fuse3 fuse3=libfuse3-dev
