#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, without Docker or a registry:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler (as for kwok),
# plus containerd v2 + runc, the kubelet, kube-proxy (iptables), the CNI
# bridge and CoreDNS (cluster domain only, nothing forwarded), all processes.
#
#   hack/cluster/node.sh up      build once (cached), start, wait until usable
#   hack/cluster/node.sh down    stop it and undo everything it did outside .cluster/
#   hack/cluster/node.sh status  exit 0 if the node is up and Ready
#
# State: <repo>/.cluster/node (kubeconfig: .cluster/node/kubeconfig). Some
# things are machine-wide whatever the configs say (the bridge, iptables,
# sysctls, kubepods cgroups, /var/lib/kubelet/device-plugins, /var/log/containers,
# /var/lib/cni, /run/containerd/s), so only one real node can run on a machine.
# /var/lib/admin-api-node/owner names the checkout whose node holds them; `up`
# from another checkout first tears that node down, from that record alone
# (its checkout may be gone).
#
# Network: everything on the bridge adminapi0 (10.244.0.1, also the node IP);
# pods 10.244.0.0/16, services 10.96.0.0/16, both routed only to the bridge.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_NAME=admin-api-node
BRIDGE=adminapi0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/16
SVC_CIDR=10.96.0.0/16
SVC_FIRST_IP=10.96.0.1
CLUSTER_DOMAIN=cluster.local
API_PORT=6443
ETCD_PORT=12379 # loopback only: etcd has no authentication here
STATE="${REPO_ROOT}/.cluster/node"
KUBECONFIG_OUT="${STATE}/kubeconfig"
GLOBAL=/var/lib/admin-api-node
PAUSE_IMAGE=localhost/pause:3.10-local
READY_TIMEOUT="${ADMINAPI_CLUSTER_TIMEOUT:-180}"
export PATH="${CLUSTER_BIN_DIR}:${PATH}"

log() { echo "node: $*" >&2; }
die() { log "$*"; exit 1; }
kubectl_() { kubectl --kubeconfig "${KUBECONFIG_OUT}" --request-timeout=5s "$@"; }

# ---- can this machine run a node? ------------------------------------------

unsupported_reason() {
  [[ "$(id -u)" == 0 ]] || { echo "not root"; return; }
  command -v runc >/dev/null || { echo "no runc (apt-get install runc)"; return; }
  command -v iptables >/dev/null || { echo "no iptables (apt-get install iptables)"; return; }
  command -v buildah >/dev/null || { echo "no buildah (apt-get install buildah)"; return; }
  command -v gcc >/dev/null || { echo "no gcc (apt-get install gcc), for the pause image"; return; }
  ip link add adminapi-probe0 type bridge 2>/dev/null || { echo "cannot create a bridge"; return; }
  ip link del adminapi-probe0
  [[ -d /proc/sys/net/bridge ]] || modprobe br_netfilter 2>/dev/null || [[ -d /proc/sys/net/bridge ]] ||
    { echo "no br_netfilter"; return; }
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || { echo "no overlayfs"; return; }
  [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] || { echo "no cgroups"; return; }
}

# ---- teardown (also of another checkout's node) ----------------------------

# Live pids whose command line names the state dir.
pids_under() { # <state dir>
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' <"${p}/cmdline"; } 2>/dev/null | grep -qF "$1/" && echo "${p#/proc/}"
  done
  return 0
}

kill_under() { # <state dir>
  local pids alive _
  mapfile -t pids < <(pids_under "$1")
  ((${#pids[@]})) || return 0
  kill "${pids[@]}" 2>/dev/null || true
  for _ in {1..40}; do
    mapfile -t alive < <(pids_under "$1")
    ((${#alive[@]})) || return 0
    sleep 0.25
  done
  kill -9 "${alive[@]}" 2>/dev/null || true
  sleep 0.5
}

umount_under() { # <dir>: deepest first
  local m
  awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || true
  done
}

# Undoes what a node of <state dir> did to the machine, whichever checkout ran
# it. Idempotent; safe when nothing is there; best effort (a step that finds nothing to undo
# must not stop the next ones), hence the subshell without -e.
teardown() ( # <state dir>
  set +e +o pipefail
  local s="$1" ipt ch c h
  # 1. every process of that node: control plane, kubelet, containerd, its shims, coredns
  kill_under "${s}"
  # the containers themselves, no longer watched by a shim (runc state lives under the state dir)
  if [[ -d "${s}/run/runc" ]]; then
    for c in $(runc --root "${s}/run/runc" list -q 2>/dev/null); do
      runc --root "${s}/run/runc" kill "${c}" KILL 2>/dev/null || true
      runc --root "${s}/run/runc" delete -f "${c}" 2>/dev/null || true
    done
  fi
  # 2. mounts (container rootfs, volumes, network namespaces: their veths go with them)
  umount_under "${s}"
  umount_under /var/lib/kubelet
  umount_under /run/containerd
  # 3. network: kube-proxy's and kubelet's iptables chains, CNI's, the bridge, routes
  for ipt in iptables ip6tables; do
    command -v "${ipt}" >/dev/null || continue
    "${ipt}-save" 2>/dev/null | grep -E 'KUBE-|CNI-' >/dev/null || continue
    # Drop every rule that jumps to our chains, then the chains (filter, nat, mangle).
    for t in filter nat mangle; do
      "${ipt}" -t "${t}" -S 2>/dev/null | grep -E '^-A .* -j (KUBE-|CNI-)' | sed 's/^-A/-D/' |
        while read -r rule; do eval "${ipt} -t ${t} ${rule}" 2>/dev/null || true; done
      for ch in $("${ipt}" -t "${t}" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/ {print $2}'); do
        "${ipt}" -t "${t}" -F "${ch}" 2>/dev/null || true
      done
      for ch in $("${ipt}" -t "${t}" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/ {print $2}'); do
        "${ipt}" -t "${t}" -X "${ch}" 2>/dev/null || true
      done
    done
  done
  ip route del "${SVC_CIDR}" dev "${BRIDGE}" 2>/dev/null || true
  # veths left by pods whose CNI DEL never ran: their peer ends are on the bridge
  for c in $(ip -o link show master "${BRIDGE}" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "${c}" 2>/dev/null || true
  done
  ip link del "${BRIDGE}" 2>/dev/null || true
  # 4. sysctls back to what they were before the first node
  if [[ -f "${GLOBAL}/sysctl.orig" ]]; then
    while read -r key value; do sysctl -qw "${key}=${value}" 2>/dev/null || true; done <"${GLOBAL}/sysctl.orig"
    rm -f "${GLOBAL}/sysctl.orig"
  fi
  # 5. the kubelet's cgroups (cgroup v1: one tree per controller; v2: one)
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [[ -d "${h}kubepods" ]] && find "${h}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  # 6. the machine-wide paths kubelet, containerd and libcni use whatever their configs say
  rm -rf /var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd
  # buildah (make images) leaves its CNI lock even with --network host
  rm -f /etc/cni/net.d/cni.lock && rmdir /etc/cni/net.d /etc/cni 2>/dev/null || true
  # 7. the node's own state
  rm -rf "${s}"
  rm -f "${GLOBAL}/owner"
)

# ---- configuration ---------------------------------------------------------

pki() {
  local d="${STATE}/pki"
  mkdir -p "${d}"
  (
    cd "${d}"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=admin-api-node-ca" 2>/dev/null
    cert() { # <name> <subject> [<SANs>]
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      if [[ -n "${3:-}" ]]; then
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" >"$1.ext"
      else
        printf 'extendedKeyUsage=clientAuth\n' >"$1.ext"
      fi
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 \
        -extfile "$1.ext" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    cert apiserver "/CN=kube-apiserver" "IP:${NODE_IP},IP:${SVC_FIRST_IP},IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.${CLUSTER_DOMAIN}"
    cert kubelet-serving "/CN=${NODE_NAME}" "IP:${NODE_IP},DNS:${NODE_NAME}"
    cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    cert admin "/O=system:masters/CN=admin-api-node-admin"
    cert kubelet "/O=system:nodes/CN=system:node:${NODE_NAME}"
    cert kube-proxy "/CN=system:kube-proxy"
    cert controller-manager "/CN=system:kube-controller-manager"
    cert scheduler "/CN=system:kube-scheduler"
    cert coredns "/CN=system:admin-api-coredns"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    local n
    for n in admin kubelet kube-proxy controller-manager scheduler coredns; do
      kubectl config set-cluster node --server "https://${NODE_IP}:${API_PORT}" --certificate-authority ca.crt \
        --embed-certs --kubeconfig "${n}.kubeconfig" >/dev/null
      kubectl config set-credentials "${n}" --client-certificate "${n}.crt" --client-key "${n}.key" \
        --embed-certs --kubeconfig "${n}.kubeconfig" >/dev/null
      kubectl config set-context node --cluster node --user "${n}" --kubeconfig "${n}.kubeconfig" >/dev/null
      kubectl config use-context node --kubeconfig "${n}.kubeconfig" >/dev/null
    done
  )
}

configs() {
  local e="${STATE}/etc"
  mkdir -p "${e}" "${STATE}/cni/net.d" "${STATE}/logs" "${STATE}/pids" "${STATE}/run" "${STATE}/data"
  cat >"${e}/containerd.toml" <<EOF
# containerd v2: everything under the node's state dir, cgroupfs, the local pause image.
version = 3
root = "${STATE}/containerd/root"
state = "${STATE}/containerd/state"
[grpc]
  address = "${STATE}/run/containerd.sock"
[ttrpc]
  address = "${STATE}/run/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "${STATE}/containerd/opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = true
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${PAUSE_IMAGE}"
[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  # Machines without CAP_SYS_RESOURCE (VMs like ours): never ask runc for an
  # oom_score_adj below containerd's own, or every sandbox fails to start.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "${STATE}/run/runc"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["${CLUSTER_BIN_DIR}/cni"]
    conf_dir = "${STATE}/cni/net.d"
EOF
  cat >"${STATE}/cni/net.d/10-admin-api.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "admin-api",
  "plugins": [
    {"type": "bridge", "bridge": "${BRIDGE}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDR}", "gateway": "${NODE_IP}"}]],
              "routes": [{"dst": "${POD_CIDR}"}, {"dst": "${SVC_CIDR}"}], "dataDir": "${STATE}/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
  cgroup_v1=true
  [[ -f /sys/fs/cgroup/cgroup.controllers ]] && cgroup_v1=false
  cat >"${e}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
$(${cgroup_v1} && echo "failCgroupV1: false  # a cgroup v1 machine: kubelet 1.35 still runs there when asked")
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://${STATE}/run/containerd.sock
address: ${NODE_IP}
port: 10250
healthzBindAddress: ${NODE_IP}
healthzPort: 10248
readOnlyPort: 0
tlsCertFile: ${STATE}/pki/kubelet-serving.crt
tlsPrivateKeyFile: ${STATE}/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: ${STATE}/pki/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDomain: ${CLUSTER_DOMAIN}
clusterDNS: [${NODE_IP}]
# No upstream resolvers for pods: names outside the cluster do not resolve.
resolvConf: ""
podLogsDir: ${STATE}/pod-logs
staticPodPath: ""
serializeImagePulls: false
# A shared dev machine: never evict for disk or memory pressure, never GC our images.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 110
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
protectKernelDefaults: false
makeIPTablesUtilChains: false
EOF
  cat >"${e}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: ${STATE}/pki/kube-proxy.kubeconfig}
hostnameOverride: ${NODE_NAME}
bindAddress: ${NODE_IP}
clusterCIDR: ${POD_CIDR}
# NodePorts only on the bridge, never the machine's uplink.
nodePortAddresses: ["${POD_CIDR}"]
iptables: {localhostNodePorts: false, masqueradeAll: false}
metricsBindAddress: ${NODE_IP}:10249
healthzBindAddress: ${NODE_IP}:10256
# Leave the machine's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  cat >"${e}/Corefile" <<EOF
# The cluster domain (and reverse lookups of pod/service IPs) from the API;
# there is no other zone and no forwarding: every other name is refused.
${CLUSTER_DOMAIN}:53 10.in-addr.arpa:53 {
    bind ${NODE_IP}
    errors
    health ${NODE_IP}:8080
    ready ${NODE_IP}:8181
    cache 5
    kubernetes ${CLUSTER_DOMAIN} 10.in-addr.arpa {
        kubeconfig ${STATE}/pki/coredns.kubeconfig node
        pods insecure
    }
}
EOF
}

# ---- the pause image (from kubernetes' own pause.c) ------------------------

PAUSE_TAR="${CLUSTER_BIN_DIR}/pause-image.tar"

pause_image() {
  [[ -s "${PAUSE_TAR}" ]] && return 0
  local src work c
  src="$(cd "${CLUSTER_HACK_DIR}/k8s" && go list -mod=readonly -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  [[ -f "${src}" ]] || (cd "${CLUSTER_HACK_DIR}/k8s" && go mod download k8s.io/kubernetes)
  work="$(mktemp -d)"
  gcc -Os -Wall -Werror -static -DVERSION=v3.10-admin-api -o "${work}/pause" "${src}"
  strip "${work}/pause"
  local b=(buildah --root "${work}/storage" --runroot "${work}/run" --storage-driver vfs)
  c="$("${b[@]}" from scratch)"
  "${b[@]}" copy --chmod 0755 "${c}" "${work}/pause" /pause >/dev/null
  "${b[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "${c}"
  "${b[@]}" commit -q --format oci --rm "${c}" "${PAUSE_IMAGE}" >/dev/null
  "${b[@]}" push -q "${PAUSE_IMAGE}" "oci-archive:${PAUSE_TAR}.tmp:${PAUSE_IMAGE}"
  mv -f "${PAUSE_TAR}.tmp" "${PAUSE_TAR}"
  "${b[@]}" rm -a >/dev/null 2>&1 || true
  umount_under "${work}"
  rm -rf "${work}"
}

# ---- start -----------------------------------------------------------------

start() { # <name> <command...>: in the background, logs and pid under the state dir
  local n="$1"
  shift
  nohup "$@" >"${STATE}/logs/${n}.log" 2>&1 8>&- 9>&- &
  echo $! >"${STATE}/pids/${n}.pid"
}

show_logs() {
  local f
  for f in "${STATE}"/logs/*.log; do
    [[ -f "${f}" ]] || continue
    echo "----- ${f} (last 15 lines)" >&2
    tail -n 15 "${f}" >&2
  done
}

wait_for() { # <what> <command...>
  local what="$1" deadline=$((SECONDS + READY_TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${READY_TIMEOUT}s waiting for ${what}"
      show_logs
      return 1
    fi
    sleep 0.5
  done
}

save_sysctl() { # <key> <value>: sets it, remembering the machine's value the first time
  local now
  now="$(sysctl -n "$1")"
  grep -q "^$1 " "${GLOBAL}/sysctl.orig" 2>/dev/null || echo "$1 ${now}" >>"${GLOBAL}/sysctl.orig"
  [[ "${now}" == "$2" ]] || sysctl -qw "$1=$2"
}

network() {
  ip link add "${BRIDGE}" type bridge
  ip addr add "${NODE_IP}/16" dev "${BRIDGE}"
  ip link set "${BRIDGE}" up
  # Service IPs go to the bridge (kube-proxy DNATs them), never out of the uplink.
  ip route add "${SVC_CIDR}" dev "${BRIDGE}" src "${NODE_IP}"
  save_sysctl net.ipv4.ip_forward 1
  save_sysctl net.bridge.bridge-nf-call-iptables 1
  # The kubelet sets these itself (protectKernelDefaults: false): remember the machine's values for `down`.
  local key
  for key in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
    save_sysctl "${key}" "$(sysctl -n "${key}")"
  done
}

control_plane() {
  local p="${STATE}/pki"
  start etcd "$(cluster_binary_path etcd)" --name node --data-dir "${STATE}/data/etcd" \
    --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "node=http://127.0.0.1:$((ETCD_PORT + 1))" --listen-metrics-urls "" \
    --unsafe-no-fsync --quota-backend-bytes 2147483648
  wait_for etcd curl -sf "http://127.0.0.1:${ETCD_PORT}/health"
  start kube-apiserver "$(cluster_binary_path kube-apiserver)" --etcd-servers "http://127.0.0.1:${ETCD_PORT}" \
    --bind-address "${NODE_IP}" --advertise-address "${NODE_IP}" --secure-port "${API_PORT}" \
    --tls-cert-file "${p}/apiserver.crt" --tls-private-key-file "${p}/apiserver.key" --client-ca-file "${p}/ca.crt" \
    --service-account-issuer "https://kubernetes.default.svc.${CLUSTER_DOMAIN}" \
    --service-account-key-file "${p}/sa.pub" --service-account-signing-key-file "${p}/sa.key" \
    --service-cluster-ip-range "${SVC_CIDR}" --authorization-mode Node,RBAC \
    --kubelet-client-certificate "${p}/apiserver-kubelet-client.crt" \
    --kubelet-client-key "${p}/apiserver-kubelet-client.key" --kubelet-certificate-authority "${p}/ca.crt" \
    --kubelet-preferred-address-types InternalIP --profiling=false
  cp "${p}/admin.kubeconfig" "${KUBECONFIG_OUT}"
  wait_for "the API server" kubectl_ get --raw /readyz
  start kube-controller-manager "$(cluster_binary_path kube-controller-manager)" \
    --kubeconfig "${p}/controller-manager.kubeconfig" --authentication-kubeconfig "${p}/controller-manager.kubeconfig" \
    --authorization-kubeconfig "${p}/controller-manager.kubeconfig" \
    --bind-address "${NODE_IP}" --secure-port 10257 --service-account-private-key-file "${p}/sa.key" \
    --root-ca-file "${p}/ca.crt" --use-service-account-credentials --cluster-signing-cert-file "${p}/ca.crt" \
    --cluster-signing-key-file "${p}/ca.key" --leader-elect=false --controllers '*,-nodeipam' --profiling=false
  start kube-scheduler "$(cluster_binary_path kube-scheduler)" --kubeconfig "${p}/scheduler.kubeconfig" \
    --authentication-kubeconfig "${p}/scheduler.kubeconfig" --authorization-kubeconfig "${p}/scheduler.kubeconfig" \
    --bind-address "${NODE_IP}" --secure-port 10259 --leader-elect=false --profiling=false
  # The cluster DNS reads services, endpoints and namespaces, nothing else.
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "admin-api:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "admin-api:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "admin-api:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:admin-api-coredns"}]
EOF
}

runtime() {
  local ctr=(ctr --address "${STATE}/run/containerd.sock" -n k8s.io)
  # Its own shim first on PATH (containerd starts containerd-shim-runc-v2 by name).
  start containerd env PATH="${CLUSTER_BIN_DIR}:${PATH}" "$(cluster_binary_path containerd)" \
    --config "${STATE}/etc/containerd.toml"
  wait_for containerd "${ctr[@]}" version
  "${ctr[@]}" images import "${PAUSE_TAR}" >/dev/null
}

node_processes() {
  local p="${STATE}/pki"
  start kubelet "$(cluster_binary_path kubelet)" --config "${STATE}/etc/kubelet.yaml" \
    --kubeconfig "${p}/kubelet.kubeconfig" --root-dir "${STATE}/kubelet" --cert-dir "${STATE}/kubelet-pki" \
    --hostname-override "${NODE_NAME}" --node-ip "${NODE_IP}"
  start kube-proxy "$(cluster_binary_path kube-proxy)" --config "${STATE}/etc/kube-proxy.yaml"
  start coredns "$(cluster_binary_path coredns)" -conf "${STATE}/etc/Corefile"
}

node_ready() {
  kubectl_ get node "${NODE_NAME}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}

# All our processes alive, the API answering, the node Ready.
healthy() {
  [[ "$(cat "${GLOBAL}/owner" 2>/dev/null)" == "${STATE}" ]] || return 1
  local n pid
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns; do
    pid="$(cat "${STATE}/pids/${n}.pid" 2>/dev/null)" || return 1
    { tr '\0' ' ' <"/proc/${pid}/cmdline"; } 2>/dev/null | grep -qF "${STATE}/" || return 1
  done
  local _
  for _ in 1 2 3; do # a busy machine must not make a healthy node look dead
    node_ready && return 0
    sleep 1
  done
  return 1
}

up() {
  local why
  why="$(unsupported_reason)"
  [[ -z "${why}" ]] || die "this machine cannot run a real node: ${why} (CLUSTER_RUNTIME=kwok runs simulated pods instead)"
  mkdir -p "${GLOBAL}"
  # One up/down at a time on the whole machine (the node's resources are global).
  exec 9>"${GLOBAL}/lock"
  flock 9
  "${CLUSTER_HACK_DIR}/build.sh" --node >/dev/null 9>&-
  if healthy; then
    log "already up; KUBECONFIG=${KUBECONFIG_OUT}"
    return 0
  fi
  local owner
  owner="$(cat "${GLOBAL}/owner" 2>/dev/null || true)"
  if [[ -n "${owner}" && "${owner}" != "${STATE}" ]]; then
    log "taking over from the node of another checkout (${owner%/.cluster/node}): tearing it down"
    teardown "${owner}"
  elif [[ -n "${owner}" || -d "${STATE}" ]]; then
    log "restarting the node from scratch (it was not healthy)"
  fi
  teardown "${STATE}" # also whatever a crashed or unrecorded node left behind
  local start_s=${SECONDS}
  log "starting (kube ${K8S_VERSION}, containerd ${CONTAINERD_VERSION}, CNI ${CNI_VERSION}, CoreDNS ${COREDNS_VERSION})"
  pause_image
  mkdir -p "${STATE}"
  echo "${STATE}" >"${GLOBAL}/owner" # from now on a later up or down knows what to undo
  pki
  configs
  network
  control_plane
  runtime
  node_processes
  wait_for "the node to be Ready" node_ready
  wait_for "kube-controller-manager (the default ServiceAccount)" kubectl_ -n default get serviceaccount default
  wait_for "the cluster DNS" curl -sf "http://${NODE_IP}:8181/ready"
  log "up in $((SECONDS - start_s))s; KUBECONFIG=${KUBECONFIG_OUT}"
}

down() {
  # Nothing of ours on this machine (or not root, so nothing we could have made).
  [[ -d "${STATE}" || -f "${GLOBAL}/owner" ]] || { log "down"; return 0; }
  mkdir -p "${GLOBAL}"
  exec 9>"${GLOBAL}/lock"
  flock 9
  local owner
  owner="$(cat "${GLOBAL}/owner" 2>/dev/null || true)"
  if [[ -n "${owner}" && "${owner}" != "${STATE}" ]]; then
    # Another checkout's node: ours is not running (only one can); leave that one alone.
    rm -rf "${STATE}"
    log "down (the running node is another checkout's: ${owner%/.cluster/node}; left alone)"
    return 0
  fi
  teardown "${STATE}"
  rm -rf "${GLOBAL}"
  log "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) healthy ;;
  supported) why="$(unsupported_reason)"; [[ -z "${why}" ]] || { echo "${why}"; exit 1; } ;;
  *)
    echo "usage: $0 up|down|status|supported" >&2
    exit 2
    ;;
esac
