#!/usr/bin/env bash
# Writes a kubeconfig that acts as the operator's ServiceAccount (from manifests/), so a locally run
# operator has exactly the permissions it has in the cluster: no more.
#   hack/operator-kubeconfig.sh ADMIN_KUBECONFIG OUT
set -euo pipefail
admin="$1" out="$2"
k() { kubectl --kubeconfig "$admin" "$@"; }
server=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
token=$(k -n adminapi-operator create token adminapi-operator --duration=24h)
umask 077
cat >"$out" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
- name: adminapi-operator
  user: {token: "$token"}
contexts:
- name: adminapi-operator
  context: {cluster: local, user: adminapi-operator}
current-context: adminapi-operator
YAML
