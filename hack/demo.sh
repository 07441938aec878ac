#!/usr/bin/env bash
# `make demo`: the whole product on this machine, no Docker needed.
#  1. the local Kubernetes control plane (hack/cluster; kwok plays the kubelets);
#  2. the CRD, RBAC and operator manifests (kubectl apply -k manifests/);
#  3. the operator, run here as a process under its own ServiceAccount (kwok's pods run no containers);
#  4. a real admin-api service on local PostgreSQL and Redis, which the rollout gate checks;
#  5. the sample AdminApi (the guide's deployment), watched until it is Ready.
# Stop it all with `make demo-down`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN=.run/demo
NS=ai-streams
KC=.cluster/kubeconfig
mkdir -p "$RUN"
step() { printf '\n== %s\n' "$*"; }
k() { kubectl --kubeconfig "$KC" "$@"; }

step "local Kubernetes control plane (the first run builds it: several minutes)"
hack/cluster/cluster.sh up
# The kubectl the cluster script built, where the machine has none.
command -v kubectl >/dev/null || { source hack/cluster/lib.sh; PATH="$(dirname "$(cluster_binary_path kubectl)"):$PATH"; }

step "CRD, RBAC and the operator's manifests: kubectl apply -k manifests/"
k apply --server-side --force-conflicts -k manifests/ >/dev/null
k wait --for=condition=Established crd/adminapis.aistreams.io --timeout=60s >/dev/null
# kwok would only pretend to run the operator's pod: run the real operator here instead.
k -n adminapi-operator scale deployment adminapi-operator --replicas=0 >/dev/null
hack/operator-kubeconfig.sh "$KC" "$RUN/operator.kubeconfig"

step "PostgreSQL and Redis on loopback; the admin-api service on http://127.0.0.1:8001"
$BIN/python -m tests.support.services up >/dev/null
eval "$($BIN/python -m tests.support.services env)"
"$BIN/admin-api" migrate
if [ ! -s "$RUN/admin-password" ]; then
  $BIN/python -c 'import secrets; print(secrets.token_urlsafe(18))' >"$RUN/admin-password"
  chmod 600 "$RUN/admin-password"
fi
"$BIN/admin-api" create-user admin --admin --password-stdin <"$RUN/admin-password" 2>/dev/null || true
if ! curl -fsS http://127.0.0.1:8001/health/live >/dev/null 2>&1; then
  # No LLM runs on this machine: chat answers 503 until LLM_ENDPOINT points at one.
  LLM_ENDPOINT="${LLM_ENDPOINT:-http://127.0.0.1:8000/v1}" LLM_MODEL="${LLM_MODEL:-demo}" COOKIE_SECURE=false \
    nohup "$BIN/admin-api" serve --host 127.0.0.1 --port 8001 >"$RUN/service.log" 2>&1 &
  echo $! >"$RUN/service.pid"
fi

step "the operator (logs: $RUN/operator.log)"
if [ ! -s "$RUN/operator.pid" ] || ! kill -0 "$(cat "$RUN/operator.pid")" 2>/dev/null; then
  KUBECONFIG="$RUN/operator.kubeconfig" nohup "$BIN/adminapi-operator" --namespace "$NS" \
    --liveness=http://127.0.0.1:8081/healthz >"$RUN/operator.log" 2>&1 &
  echo $! >"$RUN/operator.pid"
fi

step "the sample AdminApi (manifests/sample-adminapi.yaml) in namespace $NS"
k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
k -n "$NS" create secret generic admin-api-secrets --dry-run=client -o yaml \
  --from-literal=database-url="$DATABASE_URL" --from-literal=redis-url="$REDIS_URL" \
  --from-literal=llm-endpoint=http://vllm:8000/v1 --from-literal=llm-model=demo | k apply -f - >/dev/null
k apply -f manifests/sample-adminapi.yaml >/dev/null
# The gate asks the real service running here (the Service's DNS name does not resolve outside the cluster).
k -n "$NS" patch adminapi admin-api --type merge \
  -p '{"spec":{"rollout":{"healthCheckURL":"http://127.0.0.1:8001","timeoutSeconds":60}}}' >/dev/null

step "kubectl get adminapi -n $NS (waiting for Ready)"
for _ in $(seq 120); do
  phase=$(k -n "$NS" get adminapi admin-api -o jsonpath='{.status.phase}')
  [ "$phase" = Ready ] && break
  sleep 1
done
k -n "$NS" get adminapi
[ "$phase" = Ready ] || { echo "not Ready: see $RUN/operator.log"; exit 1; }

cat <<TXT

The AdminApi is Ready. Try it (export KUBECONFIG=$PWD/$KC):
  kubectl -n $NS get adminapi,deploy,svc,pdb,secret
  kubectl explain adminapi.spec
  # a safe rollout: backup Job, new image, health gate, Ready
  kubectl -n $NS patch adminapi admin-api --type merge -p '{"spec":{"image":"admin-api:1.1.0"}}'
  # a bad release (its pods never become ready): rolled back by itself after timeoutSeconds (60 s here)
  kubectl -n $NS patch adminapi admin-api --type merge -p '{"spec":{"image":"admin-api:1.2.0","podLabels":{"sim.aistreams.io/ready":"false"}}}'
  kubectl -n $NS get adminapi -w          # the phase as it moves
  kubectl -n $NS describe adminapi admin-api   # the story, as Events
The service: http://127.0.0.1:8001/docs (user admin, password in $RUN/admin-password).
Stop everything: make demo-down
TXT
