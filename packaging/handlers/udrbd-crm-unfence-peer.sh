#!/bin/bash
#
# udrbd-crm-unfence-peer.sh — udrbd's counterpart of drbd-utils'
# crm-unfence-peer.sh: removes the drbd-fence-by-handler-<res>-<ms-id>
# constraint that udrbd-crm-fence-peer.sh placed, once this node's disk and
# the peer's are both UpToDate. Run it as the after-resync-target handler:
#
#   handlers { after-resync-target "/usr/local/lib/udrbd/udrbd-crm-unfence-peer.sh"; }
#
# Exit 0: removed, or there was none; exit 1: a disk is not UpToDate yet (the
# constraint stays), or the CIB could not be read. Same options and
# environment as udrbd-crm-fence-peer.sh (next to this file), which does the work.
#
exec "$(dirname "$(readlink -f "$0")")/udrbd-crm-fence-peer.sh" --mode=unfence "$@"
