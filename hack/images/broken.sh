#!/usr/bin/env bash
# A release that cannot start, for trying a bad rollout: IMAGE with an entrypoint that exits 1
# (one config change, no new layer), imported into the real node as NEW_REF.
#   hack/images/broken.sh IMAGE NEW_REF
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
image="$1" ref="$2"
STORE="${ADMINAPI_CACHE}/buildah"
buildah=(buildah --root "${STORE}/root" --runroot "${STORE}/run" --storage-driver overlay)
c="$("${buildah[@]}" from --pull=never "${image}")"
"${buildah[@]}" config --entrypoint '["sh", "-c", "echo \"this release is broken: it exits at start\" >&2; exit 1"]' \
  --cmd '[]' "${c}"
"${buildah[@]}" commit -q --rm "${c}" "${ref}" >/dev/null
archive="$(mktemp /var/tmp/admin-api-image.XXXXXX.tar)"
trap 'rm -f "${archive}"' EXIT
"${buildah[@]}" push -q "${ref}" "oci-archive:${archive}:${ref}"
"${CLUSTER_BIN_DIR}/ctr" 2> >(grep -v DEPRECATION >&2) --address "${REPO_ROOT}/.cluster/node/run/containerd.sock" -n k8s.io images import "${archive}" >/dev/null
