#!/usr/bin/env bash
# The local Kubernetes clusters for tests and the demo, without Docker. Two kinds:
#   real  one real node (hack/cluster/node.sh): kubelet, containerd, runc, CNI,
#         kube-proxy, CoreDNS; kubeconfig <repo>/.cluster/node/kubeconfig
#   kwok  etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
#         (fake kubelets: pods run nothing) as processes on loopback, started
#         by kwokctl; kubeconfig <repo>/.cluster/kubeconfig, state .cluster/kwok
# Both can run at once.
#
#   hack/cluster/cluster.sh up [real|kwok]      build once (cached), start, wait until usable
#   hack/cluster/cluster.sh down [real|kwok]    stop and remove it (both by default)
#   hack/cluster/cluster.sh status [real|kwok]  exit 0 if it answers
#
# Without a kind: $CLUSTER_RUNTIME, else real where the machine can run a node
# (root, runc, iptables, bridges; hack/cluster/node.sh supported), else kwok.
# up and down are idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER_NAME=admin-api
STATE_DIR="${REPO_ROOT}/.cluster"
KUBECONFIG_OUT="${STATE_DIR}/kubeconfig"
# kwokctl keeps each cluster's state under $KWOK_WORKDIR/clusters/<name>;
# keeping it in the checkout makes `down` and `make clean` remove all of it.
export KWOK_WORKDIR="${STATE_DIR}/kwok"
CLUSTER_DIR="${KWOK_WORKDIR}/clusters/${CLUSTER_NAME}"
READY_TIMEOUT="${ADMINAPI_CLUSTER_TIMEOUT:-180}"
LOCK_FILE="${STATE_DIR}/cluster.lock"

# Our kubectl, when we had to build one, comes first; kwokctl needs one too.
export PATH="${CLUSTER_BIN_DIR}:${PATH}"

log() { echo "cluster: $*" >&2; }

kubectl_() { kubectl --kubeconfig "${KUBECONFIG_OUT}" --request-timeout=5s "$@"; }

answers_once() {
  [[ -s "${KUBECONFIG_OUT}" ]] && kubectl_ get --raw /version >/dev/null 2>&1
}

# A few tries: a busy machine must not make a healthy cluster look dead
# (up would then restart it under the feet of running tests).
answers() {
  local _
  for _ in 1 2 3; do
    answers_once && return 0
    [[ -s "${KUBECONFIG_OUT}" ]] || return 1
    sleep 1
  done
  return 1
}

# Live processes recorded in the cluster's pid files that really are ours:
# after a reboot a recorded pid may belong to something else.
our_pids() {
  local pidfile pid
  for pidfile in "${CLUSTER_DIR}"/pids/*.pid; do
    [[ -f "${pidfile}" ]] || continue
    pid="$(cat "${pidfile}")"
    [[ "${pid}" =~ ^[0-9]+$ ]] || continue
    { tr '\0' ' ' <"/proc/${pid}/cmdline"; } 2>/dev/null | grep -qF "${CLUSTER_DIR}/" && echo "${pid}"
  done
  return 0
}

# TERM, then KILL what is still there after a grace (some components take
# long over SIGTERM).
stop_our_processes() {
  local pids alive pid _
  mapfile -t pids < <(our_pids)
  ((${#pids[@]})) || return 0
  kill "${pids[@]}" 2>/dev/null || true
  for _ in {1..20}; do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "${pid}" 2>/dev/null && alive+=("${pid}"); done
    ((${#alive[@]})) || return 0
    sleep 0.25
  done
  kill -9 "${alive[@]}" 2>/dev/null || true
}

# Dumps the components' logs tails, so a failed start explains itself.
show_logs() {
  local f
  for f in "${CLUSTER_DIR}"/logs/*.log; do
    [[ -f "${f}" ]] || continue
    echo "----- ${f} (last 15 lines)" >&2
    tail -n 15 "${f}" >&2
  done
}

wait_for() { # <what> <command...>: polls until the command succeeds
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

node_ready() {
  kubectl_ get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -qx True
}

up() {
  mkdir -p "${STATE_DIR}"
  # One `up` or `down` at a time (make cluster and pytest may race). Every
  # command that may start a daemon gets `8>&-`: an inherited lock fd would
  # hold the lock for the cluster's whole life.
  exec 8>"${LOCK_FILE}"
  flock 8

  "${CLUSTER_HACK_DIR}/build.sh" >/dev/null 8>&-

  local name binaries
  for name in "${CLUSTER_BINARIES[@]}"; do
    binaries+="${name}=$(cluster_binary_path "${name}") "
  done
  # A cluster started from other binaries (version bump, KUBEBUILDER_ASSETS
  # changed) is recreated rather than half-reused.
  if [[ -d "${CLUSTER_DIR}" && "$(cat "${STATE_DIR}/binaries" 2>/dev/null)" != "${binaries}" ]]; then
    log "binaries changed; recreating the cluster"
    down_locked
  fi

  KWOK_KUBE_APISERVER_BINARY="$(cluster_binary_path kube-apiserver)"
  KWOK_KUBE_CONTROLLER_MANAGER_BINARY="$(cluster_binary_path kube-controller-manager)"
  KWOK_KUBE_SCHEDULER_BINARY="$(cluster_binary_path kube-scheduler)"
  KWOK_ETCD_BINARY="$(cluster_binary_path etcd)"
  KWOK_CONTROLLER_BINARY="$(cluster_binary_path kwok)"
  export KWOK_KUBE_APISERVER_BINARY KWOK_KUBE_CONTROLLER_MANAGER_BINARY KWOK_KUBE_SCHEDULER_BINARY \
    KWOK_ETCD_BINARY KWOK_CONTROLLER_BINARY
  # Only used by kwokctl to name downloads; kept true all the same.
  KWOK_KUBE_VERSION="$("${KWOK_KUBE_APISERVER_BINARY}" --version | awk '{print $2}')"
  export KWOK_KUBE_VERSION
  local kwokctl
  kwokctl="$(cluster_binary_path kwokctl)"

  # Forget the pids of components that are gone (a reboot, a crash): kwokctl
  # would take a stale or reused pid for a running component.
  local stopped=false pidfile ours
  ours=" $(our_pids | tr '\n' ' ') "
  for pidfile in "${CLUSTER_DIR}"/pids/*.pid; do
    [[ -f "${pidfile}" ]] || continue
    if [[ "${ours}" != *" $(cat "${pidfile}") "* ]]; then
      rm -f "${pidfile}"
      stopped=true
    fi
  done
  if ! ${stopped} && answers; then
    log "already up (${KWOK_KUBE_VERSION}); KUBECONFIG=${KUBECONFIG_OUT}"
    return 0
  fi
  if [[ -d "${CLUSTER_DIR}" ]]; then
    if ${stopped}; then
      log "restarting the cluster's stopped components"
    else
      log "restarting the cluster: its processes run but the API does not answer"
      stop_our_processes
      rm -f "${CLUSTER_DIR}"/pids/*.pid
    fi
  fi
  log "starting ${CLUSTER_NAME} (kube ${KWOK_KUBE_VERSION}, etcd ${ETCD_VERSION}, kwok ${KWOK_VERSION})"
  local start=${SECONDS}
  # Creates, or restarts a cluster whose processes are gone. --kubeconfig=
  # keeps kwokctl away from ~/.kube/config.
  if ! "${kwokctl}" create cluster --name "${CLUSTER_NAME}" --kubeconfig= --timeout 5m \
    --config "${CLUSTER_HACK_DIR}/kwokctl.yaml" \
    --config "${CLUSTER_HACK_DIR}/stages/nodes.yaml" \
    --config "${CLUSTER_HACK_DIR}/stages/pods.yaml" >"${STATE_DIR}/kwokctl.log" 2>&1 8>&-; then
    cat "${STATE_DIR}/kwokctl.log" >&2
    show_logs
    return 1
  fi
  echo "${binaries}" >"${STATE_DIR}/binaries"

  # Self-contained (certificates inline), so clients need nothing else.
  kubectl --kubeconfig "${CLUSTER_DIR}/kubeconfig.yaml" config view --minify --flatten >"${KUBECONFIG_OUT}.tmp"
  chmod 600 "${KUBECONFIG_OUT}.tmp"
  mv -f "${KUBECONFIG_OUT}.tmp" "${KUBECONFIG_OUT}"

  wait_for "the API server" answers_once
  # One fake node, managed by kwok (scale is idempotent).
  "${kwokctl}" --name "${CLUSTER_NAME}" scale node --replicas 1 >>"${STATE_DIR}/kwokctl.log" 2>&1 8>&-
  wait_for "a Ready kwok node" node_ready
  # The controller manager is working once it has made the default
  # ServiceAccount (pods cannot be admitted before).
  wait_for "kube-controller-manager" kubectl_ -n default get serviceaccount default
  log "up in $((SECONDS - start))s; KUBECONFIG=${KUBECONFIG_OUT}"
}

down_locked() {
  # Stop our processes ourselves first: kwokctl would SIGKILL whatever pid its
  # files name, and after a reboot that may be someone else's process.
  stop_our_processes
  rm -f "${CLUSTER_DIR}"/pids/*.pid
  local kwokctl
  kwokctl="$(cluster_binary_path kwokctl)"
  if [[ -d "${CLUSTER_DIR}" && -x "${kwokctl}" ]]; then
    # --kubeconfig names the file kwokctl removes its context from: ours,
    # deleted below anyway (kwokctl delete refuses an empty one).
    "${kwokctl}" delete cluster --name "${CLUSTER_NAME}" --kubeconfig="${KUBECONFIG_OUT}" \
      >>"${STATE_DIR}/kwokctl.log" 2>&1 8>&- || log "kwokctl delete failed; removing the state anyway"
  fi
  rm -rf "${KWOK_WORKDIR}" "${KUBECONFIG_OUT}" "${STATE_DIR}/binaries" "${STATE_DIR}/kwokctl.log"
}

down() {
  [[ -d "${STATE_DIR}" ]] || return 0
  exec 8>"${LOCK_FILE}"
  flock 8
  down_locked
  log "down"
}

usage() {
  echo "usage: $0 up|down|status [real|kwok]" >&2
  exit 2
}

action="${1:-}"
runtime="${2:-${CLUSTER_RUNTIME:-}}"
case "${runtime}" in
  real | kwok) ;;
  "" | auto)
    if [[ "${action}" == down && -z "${2:-}" ]]; then
      runtime=both
    elif "${CLUSTER_HACK_DIR}/node.sh" supported >/dev/null 2>&1; then
      runtime=real
    else
      runtime=kwok
    fi
    ;;
  *) usage ;;
esac

case "${action}:${runtime}" in
  up:real | down:real | status:real) exec "${CLUSTER_HACK_DIR}/node.sh" "${action}" ;;
  up:kwok) up ;;
  down:kwok) down ;;
  status:kwok) answers ;;
  down:both)
    down
    "${CLUSTER_HACK_DIR}/node.sh" down
    ;;
  *) usage ;;
esac
