#!/usr/bin/env bash
# Another release made from a built image, imported into the real node (for trying rollouts):
#   hack/images/derive.sh IMAGE NEW_REF [--entrypoint JSON] [--add SRC DEST]...
# --entrypoint replaces the entrypoint (and clears the command); --add copies a file in (mode 0644).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
image="$1" ref="$2"
shift 2
STORE="${ADMINAPI_CACHE}/buildah"
buildah=(buildah --root "${STORE}/root" --runroot "${STORE}/run" --storage-driver overlay)
c="$("${buildah[@]}" from --pull=never "${image}")"
trap '"${buildah[@]}" rm "${c}" >/dev/null 2>&1 || true' EXIT
while [[ $# -gt 0 ]]; do
  case "$1" in
    --entrypoint) "${buildah[@]}" config --entrypoint "$2" --cmd '[]' "${c}"; shift 2 ;;
    --add) "${buildah[@]}" copy --chmod 0644 "${c}" "$2" "$3" >/dev/null; shift 3 ;;
    *) echo "usage: $0 IMAGE NEW_REF [--entrypoint JSON] [--add SRC DEST]..." >&2; exit 2 ;;
  esac
done
"${buildah[@]}" commit -q "${c}" "${ref}" >/dev/null
archive="$(mktemp /var/tmp/admin-api-image.XXXXXX.tar)"
trap 'rm -f "${archive}"; "${buildah[@]}" rm "${c}" >/dev/null 2>&1 || true' EXIT
"${buildah[@]}" push -q "${ref}" "oci-archive:${archive}:${ref}"
"${CLUSTER_BIN_DIR}/ctr" 2> >(grep -v DEPRECATION >&2) --address "${REPO_ROOT}/.cluster/node/run/containerd.sock" -n k8s.io images import "${archive}" >/dev/null
