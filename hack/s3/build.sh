#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (the tests' S3-compatible server) from the version
# pinned in hack/s3/go.mod into a version-keyed cache outside the checkout, and
# prints the binary's path. A binary already there is reused (a stamp beside it
# records the go.mod/go.sum it was built from), so only the first run is slow.
#
#   hack/s3/build.sh          build if missing, print the path of weed
#   hack/s3/build.sh --check  exit 1 if it would have to be built
set -euo pipefail

S3_HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PACKAGE=github.com/seaweedfs/seaweedfs/weed

# The single pin: the wrapper module's require line (read without needing go).
VERSION="$(awk -v m=github.com/seaweedfs/seaweedfs '($1 == "require" && $2 == m) { print $3; exit } ($1 == m) { print $2; exit }' "${S3_HACK_DIR}/go.mod")"
if [[ -z "${VERSION}" ]]; then
  echo "hack/s3: cannot read the SeaweedFS version from hack/s3/go.mod" >&2
  exit 1
fi

ADMINAPI_CACHE="${ADMINAPI_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/admin-api}"
BIN_DIR="${ADMINAPI_CACHE}/seaweedfs-${VERSION}"
WEED="${BIN_DIR}/weed"
STAMP="$(cat "${S3_HACK_DIR}/go.mod" "${S3_HACK_DIR}/go.sum" | sha256sum | cut -c1-16)"

built() { [[ -x "${WEED}" && "$(cat "${WEED}.stamp" 2>/dev/null)" == "${STAMP}" ]]; }

if [[ "${1:-}" == "--check" ]]; then
  built && exit 0
  echo "hack/s3: to build: weed (SeaweedFS ${VERSION})" >&2
  exit 1
fi

if ! built; then
  if ! command -v go >/dev/null 2>&1; then
    echo "hack/s3: need Go to build SeaweedFS (or set ADMINAPI_TEST_S3_ENDPOINT to an S3 server)" >&2
    exit 1
  fi
  mkdir -p "${BIN_DIR}"
  # One build at a time per cache (several pytest sessions may race).
  exec 9>"${BIN_DIR}/.build.lock"
  flock 9
  if ! built; then # another process may have built it while we waited
    echo "hack/s3: building weed (SeaweedFS ${VERSION}) into ${BIN_DIR} (first run only; about 5-10 min on 2 cores)" >&2
    start=${SECONDS}
    # nice: the machine is shared with other builds and tests. Static, like upstream's release builds.
    (cd "${S3_HACK_DIR}" &&
      CGO_ENABLED=0 nice -n 10 go build -mod=readonly -trimpath -ldflags "-s -w" -o "${WEED}.tmp" "${PACKAGE}")
    mv -f "${WEED}.tmp" "${WEED}"
    echo "${STAMP}" >"${WEED}.stamp"
    echo "hack/s3: built weed in $((SECONDS - start))s" >&2
  fi
fi

echo "${WEED}"
