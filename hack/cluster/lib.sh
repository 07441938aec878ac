# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared by build.sh and cluster.sh (sourced, not run).
# Versions come from the wrapper modules' go.mod files: they are the single pin.

CLUSTER_HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${CLUSTER_HACK_DIR}/../.." && pwd)"

# Reads "require <module> <version>" from a wrapper go.mod without needing go.
_required_version() { # <go.mod> <module>
  awk -v m="$2" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m) { print $2; exit }' "$1"
}

K8S_VERSION="$(_required_version "${CLUSTER_HACK_DIR}/k8s/go.mod" k8s.io/kubernetes)"
ETCD_VERSION="$(_required_version "${CLUSTER_HACK_DIR}/etcd/go.mod" go.etcd.io/etcd/server/v3)"
KWOK_VERSION="$(_required_version "${CLUSTER_HACK_DIR}/kwok/go.mod" sigs.k8s.io/kwok)"
CONTAINERD_VERSION="$(_required_version "${CLUSTER_HACK_DIR}/containerd/go.mod" github.com/containerd/containerd/v2)"
CNI_VERSION="$(_required_version "${CLUSTER_HACK_DIR}/cni/go.mod" github.com/containernetworking/plugins)"
COREDNS_VERSION="$(_required_version "${CLUSTER_HACK_DIR}/coredns/go.mod" github.com/coredns/coredns)"
if [[ -z "${K8S_VERSION}" || -z "${ETCD_VERSION}" || -z "${KWOK_VERSION}" || -z "${CONTAINERD_VERSION}" ||
  -z "${CNI_VERSION}" || -z "${COREDNS_VERSION}" ]]; then
  echo "hack/cluster: cannot read the pinned versions from hack/cluster/*/go.mod" >&2
  return 1
fi

ADMINAPI_CACHE="${ADMINAPI_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/admin-api}"
CLUSTER_BIN_DIR="${ADMINAPI_CACHE}/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}/bin"

# Every binary the cluster needs, and the wrapper module that builds it.
CLUSTER_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok kwokctl)
# kwokctl needs a kubectl and would download one; build it only where none is
# at hand (the machine's usually is).
if ! command -v kubectl >/dev/null 2>&1 && ! [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "${KUBEBUILDER_ASSETS}/kubectl" ]]; then
  CLUSTER_BINARIES+=(kubectl)
fi

# What the real node adds (hack/cluster/node.sh): the kubelet and kube-proxy
# from the k8s module, the container runtime, the CNI plugins (in cni/, the
# directory the runtime searches), the cluster DNS. runc is the distribution's.
NODE_BINARIES=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr
  cni/bridge cni/host-local cni/loopback cni/portmap coredns)

# Path of a binary: KUBEBUILDER_ASSETS wins where it has it (envtest layout),
# otherwise our version-keyed cache.
cluster_binary_path() { # <name>
  if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "${KUBEBUILDER_ASSETS}/$1" ]]; then
    echo "${KUBEBUILDER_ASSETS}/$1"
  else
    echo "${CLUSTER_BIN_DIR}/$1"
  fi
}
