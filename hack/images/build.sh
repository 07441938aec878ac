#!/usr/bin/env bash
# `make images`: builds Dockerfile.service and Dockerfile.operator themselves with buildah
# (daemonless, host network, chroot isolation: no CNI network of its own), tags each by the
# hash of what goes into it, and imports both into the real node's containerd (no registry).
#
#   hack/images/build.sh            build what changed, import, write .cluster/images.env
#   BASE_IMAGE=python:3.11.14-slim-bookworm hack/images/build.sh
#                                   the Dockerfiles' own public base (where it can be pulled);
#                                   by default a local equivalent (hack/images/base.sh)
#
# .cluster/images.env then names SERVICE_IMAGE and OPERATOR_IMAGE (localhost/NAME:HASH).
# Layers are cached (buildah --layers): after a code change only the last layers are rebuilt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
cd "${REPO_ROOT}"

STORE="${ADMINAPI_CACHE}/buildah"
buildah=(buildah --root "${STORE}/root" --runroot "${STORE}/run" --storage-driver overlay)
NODE_STATE="${REPO_ROOT}/.cluster/node"
ctr=("${CLUSTER_BIN_DIR}/ctr" --address "${NODE_STATE}/run/containerd.sock" -n k8s.io)
quiet() { "$@" 2> >(grep -v DEPRECATION >&2); } # ctr warns about cgroup v1 on every call
log() { echo "images: $*" >&2; }

mkdir -p "${STORE}" .cluster
# One build at a time on this store (layers and names are shared).
exec 7>"${STORE}.lock"
flock 7

start=${SECONDS}
base="${BASE_IMAGE:-$(hack/images/base.sh "${buildah[@]}")}"
base_id="$("${buildah[@]}" inspect --type image --format '{{.FromImageID}}' "${base}" 2>/dev/null || echo "${base}")"

# The hash of what an image is made of: its Dockerfile, the files it copies, its base.
content_hash() { # <dockerfile> <paths...>
  local dockerfile="$1"
  shift
  {
    echo "${base_id}"
    git ls-files -z --cached --others --exclude-standard -- "${dockerfile}" "$@" |
      xargs -0 -r sha256sum | grep -v -e '/__pycache__/' -e '\.pyc$'
  } | sha256sum | cut -c1-12
}

# The machine's CA bundle, for pip behind a TLS-inspecting proxy: a build secret, so it is
# mounted for the RUN that needs it and never stored in a layer.
secret=()
[[ -s /etc/ssl/certs/ca-certificates.crt ]] && secret=(--secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt)

build() { # <name> <dockerfile> <paths...>: prints the image reference
  local name="$1" dockerfile="$2" tag ref s=${SECONDS}
  shift 2
  tag="$(content_hash "${dockerfile}" "$@")"
  ref="localhost/${name}:${tag}"
  if ! "${buildah[@]}" inspect --type image "${ref}" >/dev/null 2>&1; then
    log "building ${ref} from ${dockerfile} (base ${base})"
    nice -n 5 "${buildah[@]}" build --layers --pull=never --network host --isolation chroot \
      --build-arg "BASE_IMAGE=${base}" "${secret[@]}" -f "${dockerfile}" -t "${ref}" . \
      >".cluster/images-${name}.log" 2>&1 || { tail -n 30 ".cluster/images-${name}.log" >&2; return 1; }
    log "built ${ref} in $((SECONDS - s))s"
  fi
  echo "${ref}"
}

service="$(build admin-api Dockerfile.service Dockerfile.service pyproject.toml README.md service)"
operator="$(build adminapi-operator Dockerfile.operator Dockerfile.operator pyproject.toml README.md service operator)"

# Into the node's containerd, where the kubelet finds them (imagePullPolicy IfNotPresent:
# present, so never pulled).
if [[ -S "${NODE_STATE}/run/containerd.sock" ]]; then
  for ref in "${service}" "${operator}"; do
    if quiet "${ctr[@]}" images ls -q | grep -qxF "${ref}"; then
      continue
    fi
    s=${SECONDS}
    archive="$(mktemp /var/tmp/admin-api-image.XXXXXX.tar)"
    "${buildah[@]}" push -q "${ref}" "oci-archive:${archive}:${ref}"
    quiet "${ctr[@]}" images import "${archive}" >/dev/null
    rm -f "${archive}"
    log "imported ${ref} into the node in $((SECONDS - s))s"
  done
else
  log "no real node running (make cluster): images built, not imported"
fi

printf 'SERVICE_IMAGE=%s\nOPERATOR_IMAGE=%s\n' "${service}" "${operator}" >.cluster/images.env
log "done in $((SECONDS - start))s: ${service} ${operator}"
