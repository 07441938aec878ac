#!/usr/bin/env bash
# A release that cannot start, for trying a bad rollout: IMAGE with an entrypoint that exits 1
# (one config change, no new layer), imported into the real node as NEW_REF.
#   hack/images/broken.sh IMAGE NEW_REF
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/derive.sh" "$1" "$2" \
  --entrypoint '["sh", "-c", "echo \"this release is broken: it exits at start\" >&2; exit 1"]'
