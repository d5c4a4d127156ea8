#!/usr/bin/env bash
# Builds native/udrbd-io/build/udrbd_io.node (libc only; see native/build-addon.sh).
exec "$(dirname "$0")/../build-addon.sh" udrbd-io udrbd_io
