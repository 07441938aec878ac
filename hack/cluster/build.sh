#!/usr/bin/env bash
# Builds the local control plane's binaries from the pinned Go modules into a
# version-keyed cache outside the checkout; binaries already there (or found
# in $KUBEBUILDER_ASSETS) are reused, so only the first run is slow.
#
#   hack/cluster/build.sh          build what is missing, print the bin dir
#   hack/cluster/build.sh --check  exit 1 if something would have to be built
#   --node (with either)           also the real node's binaries (NODE_BINARIES)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check_only=false
wanted=("${CLUSTER_BINARIES[@]}")
for arg in "$@"; do
  case "${arg}" in
    --check) check_only=true ;;
    --node) wanted+=("${NODE_BINARIES[@]}") ;;
    *) echo "usage: $0 [--check] [--node]" >&2; exit 2 ;;
  esac
done

# kubelet and kube-proxy come from the k8s module too, through k8s/node.mod
# (go.mod plus their tools and the few modules only they import): changing
# go.mod itself would change the control plane's stamps, and every checkout
# sharing the cache would rebuild it.
module_of() {
  case "$1" in
    kube* | kubectl) echo k8s ;;
    etcd) echo etcd ;;
    kwok | kwokctl) echo kwok ;;
    containerd* | ctr) echo containerd ;;
    cni/*) echo cni ;;
    coredns) echo coredns ;;
  esac
}

package_of() {
  case "$1" in
    kube* | kubectl) echo "k8s.io/kubernetes/cmd/$1" ;;
    etcd) echo "go.etcd.io/etcd/server/v3" ;;
    kwok | kwokctl) echo "sigs.k8s.io/kwok/cmd/$1" ;;
    containerd* | ctr) echo "github.com/containerd/containerd/v2/cmd/$1" ;;
    cni/bridge | cni/loopback) echo "github.com/containernetworking/plugins/plugins/main/${1#cni/}" ;;
    cni/host-local) echo "github.com/containernetworking/plugins/plugins/ipam/host-local" ;;
    cni/portmap) echo "github.com/containernetworking/plugins/plugins/meta/portmap" ;;
    coredns) echo "github.com/aistreams/admin-api/hack/cluster/coredns" ;; # main.go there
  esac
}

modfile_of() { # the go.mod that builds it, relative to its module dir
  case "$1" in
    kubelet | kube-proxy) echo node.mod ;;
    *) echo go.mod ;;
  esac
}

tags_of() {
  case "$1" in
    containerd* | ctr) echo "no_btrfs no_devmapper no_zfs" ;; # snapshotters the node does not use
  esac
}

ldflags_of() {
  local flags="-s -w"
  if [[ "$1" == containerd* || "$1" == ctr ]]; then
    flags+=" -X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION}"
  fi
  if [[ "$1" == kube* || "$1" == kubectl ]]; then
    # Without these /version says v0.0.0-master, and kwokctl picks the
    # component flags by the version it reads from `kube-apiserver --version`.
    local v="${K8S_VERSION}" major minor pkg
    major="${v#v}"; major="${major%%.*}"
    minor="${v#v*.}"; minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      flags+=" -X ${pkg}.gitVersion=${v} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
      flags+=" -X ${pkg}.gitTreeState=archive -X ${pkg}.buildDate=${BUILD_DATE}"
    done
  fi
  echo "${flags}"
}

# The inputs of a build; a stamp beside each binary records them.
stamp_of() {
  local mod
  mod="${CLUSTER_HACK_DIR}/$(module_of "$1")"
  local modfile
  modfile="$(modfile_of "$1")"
  { cat "${mod}/${modfile}" "${mod}/${modfile%.mod}.sum"; package_of "$1"; ldflags_of "$1" | sed 's/buildDate=[^ ]*//g'
    [[ -z "$(tags_of "$1")" ]] || tags_of "$1"; cat "${mod}"/*.go 2>/dev/null || true; } |
    sha256sum | cut -c1-16
}

BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
missing=()
for name in "${wanted[@]}"; do
  path="$(cluster_binary_path "${name}")"
  if [[ "${path}" != "${CLUSTER_BIN_DIR}/${name}" ]]; then
    continue # from KUBEBUILDER_ASSETS
  fi
  if [[ -x "${path}" && "$(cat "${path}.stamp" 2>/dev/null)" == "$(stamp_of "${name}")" ]]; then
    continue
  fi
  missing+=("${name}")
done

if ${check_only}; then
  [[ ${#missing[@]} -eq 0 ]] && exit 0
  echo "to build: ${missing[*]}" >&2
  exit 1
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "hack/cluster: need Go to build ${missing[*]} (or set KUBEBUILDER_ASSETS to a directory holding them)" >&2
    exit 1
  fi
  mkdir -p "${CLUSTER_BIN_DIR}/cni"
  # One build at a time per cache (make cluster and pytest may race).
  exec 9>"${CLUSTER_BIN_DIR}/.build.lock"
  flock 9
  echo "hack/cluster: building ${missing[*]} into ${CLUSTER_BIN_DIR} (first run only: 6-12 min on 2 cores, plus ~1.3 GB of modules to download on a new machine)" >&2
  total_start=${SECONDS}
  for name in "${missing[@]}"; do
    path="${CLUSTER_BIN_DIR}/${name}"
    stamp="$(stamp_of "${name}")"
    # Another process may have built it while we waited for the lock.
    if [[ -x "${path}" && "$(cat "${path}.stamp" 2>/dev/null)" == "${stamp}" ]]; then
      continue
    fi
    mod="$(module_of "${name}")"
    start=${SECONDS}
    echo "hack/cluster: building ${name} ($(package_of "${name}"), module hack/cluster/${mod}) ..." >&2
    # nice: the machine is shared with other builds and tests.
    (cd "${CLUSTER_HACK_DIR}/${mod}" &&
      CGO_ENABLED=0 nice -n 10 go build -mod=readonly -modfile="$(modfile_of "${name}")" -trimpath -tags "$(tags_of "${name}")" \
        -ldflags "$(ldflags_of "${name}")" -o "${path}.tmp" "$(package_of "${name}")")
    mv -f "${path}.tmp" "${path}"
    echo "${stamp}" >"${path}.stamp"
    echo "hack/cluster: built ${name} in $((SECONDS - start))s" >&2
  done
  echo "hack/cluster: build finished in $((SECONDS - total_start))s" >&2
fi

echo "${CLUSTER_BIN_DIR}"
