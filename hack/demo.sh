#!/usr/bin/env bash
# `make demo`: the whole product on this machine, as a user runs it, no Docker needed.
#  1. a real single-node cluster (hack/cluster/node.sh: kubelet, containerd, CNI, kube-proxy, CoreDNS);
#  2. both images built from our Dockerfiles (hack/images/build.sh) and imported into the node;
#  3. PostgreSQL, Redis and an S3 server (SeaweedFS) on this machine, reachable from the pods on the
#     node's bridge address;
#  4. the operator in the cluster from its image: `kubectl apply -k` of manifests/ through an overlay
#     that only sets the image;
#  5. the sample AdminApi (manifests/sample-adminapi.yaml, our image, documents on), watched until it is Ready.
# Stop it all with `make demo-down`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN=.run/demo
NS=ai-streams
KC=.cluster/node/kubeconfig
BRIDGE_IP=10.244.0.1 # the node's bridge (hack/cluster/node.sh)
mkdir -p "$RUN"
step() { printf '\n== %s\n' "$*"; }
k() { kubectl --kubeconfig "$KC" "$@"; }
source hack/cluster/lib.sh
PATH="${CLUSTER_BIN_DIR}:$PATH" # our kubectl where the machine has none, and ctr
ctr_() { ctr --address "$PWD/.cluster/node/run/containerd.sock" -n k8s.io "$@" 2> >(grep -v DEPRECATION >&2); }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

step "a real Kubernetes node (hack/cluster/node.sh; the first run builds it: several minutes)"
hack/cluster/cluster.sh up real

step "the images, from Dockerfile.service and Dockerfile.operator (buildah; cached layers)"
hack/images/build.sh
source .cluster/images.env

step "PostgreSQL, Redis and S3 on this machine, reachable from the pods at $BRIDGE_IP"
$BIN/python -m tests.support.services up >/dev/null
eval "$($BIN/python -m tests.support.services env)"
if ! alive "$RUN/s3.pid"; then
  weed="$(hack/s3/build.sh)"
  rm -f "$RUN/s3.env"
  # SeaweedFS as the tests run it (tests/support/s3.py), kept running; its keys go to s3.env.
  nohup $BIN/python - "$weed" "$RUN" >"$RUN/s3.log" 2>&1 <<'PY' &
import os, signal, sys, tempfile, time
from pathlib import Path
from tests.support.s3 import run_seaweedfs
# make demo-down's SIGTERM unwinds the with-blocks: SeaweedFS is stopped and its temp dir removed.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
weed, run = sys.argv[1], Path(sys.argv[2])
with tempfile.TemporaryDirectory(prefix="admin-api-demo-s3-") as root, run_seaweedfs(weed, Path(root)) as s3:
    env = run / "s3.env.tmp"
    env.write_text(f"S3_PORT={s3.endpoint.rsplit(':', 1)[1]}\nS3_ACCESS_KEY={s3.access_key}\nS3_SECRET_KEY={s3.secret_key}\n")
    env.chmod(0o600)
    env.rename(run / "s3.env")
    while True:
        time.sleep(3600)
PY
  echo $! >"$RUN/s3.pid"
fi
for _ in $(seq 180); do [ -s "$RUN/s3.env" ] && break; alive "$RUN/s3.pid" || break; sleep 1; done
[ -s "$RUN/s3.env" ] || { echo "the S3 server did not start: see $RUN/s3.log"; exit 1; }
source "$RUN/s3.env"
pg_port="${DATABASE_URL##*@127.0.0.1:}"; pg_port="${pg_port%%/*}"
redis_port="${REDIS_URL##*127.0.0.1:}"; redis_port="${redis_port%%/*}"
# They listen on loopback; a relay makes them reachable on the bridge (and only there).
if alive "$RUN/relay.pid"; then kill "$(cat "$RUN/relay.pid")"; sleep 0.5; fi
# The local LLM (hack/models: SmolLM2-135M on llama.cpp's server) on loopback, unless LLM_ENDPOINT_FOR_PODS
# points the pods at another OpenAI-compatible server.
llm_port=""
if [ -z "${LLM_ENDPOINT_FOR_PODS:-}" ]; then
  hack/models/models.sh start llm
  llm_port=8000
fi
# Likewise the local embedding model (all-MiniLM-L6-v2, ONNX) for documents, unless EMBEDDINGS_ENDPOINT_FOR_PODS.
embeddings_port=""
if [ -z "${EMBEDDINGS_ENDPOINT_FOR_PODS:-}" ]; then
  hack/models/models.sh start embeddings
  embeddings_port=8002
fi
nohup $BIN/python hack/cluster/relay.py "$BRIDGE_IP" "$pg_port" "$redis_port" "$S3_PORT" $llm_port $embeddings_port \
  >"$RUN/relay.log" 2>&1 &
echo $! >"$RUN/relay.pid"
"$BIN/admin-api" migrate

# The LLM's OpenAI-compatible endpoint, as the pods reach it (through the relay on the bridge).
LLM_ENDPOINT_FOR_PODS="${LLM_ENDPOINT_FOR_PODS:-http://$BRIDGE_IP:8000/v1}"
LLM_MODEL="${LLM_MODEL:-SmolLM2-135M-Instruct}"
EMBEDDINGS_ENDPOINT_FOR_PODS="${EMBEDDINGS_ENDPOINT_FOR_PODS:-http://$BRIDGE_IP:8002/v1}"
EMBEDDING_MODEL="${EMBEDDING_MODEL:-all-MiniLM-L6-v2-onnx-int8}"

step "the operator in the cluster: kubectl apply -k (manifests/ with our image)"
mkdir -p "$RUN/overlay"
cat >"$RUN/overlay/kustomization.yaml" <<YAML
# manifests/ exactly as a user applies them; only the operator's image is ours.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../../../manifests]
images:
  - {name: adminapi-operator, newName: ${OPERATOR_IMAGE%:*}, newTag: ${OPERATOR_IMAGE##*:}}
YAML
k apply --server-side --force-conflicts -k "$RUN/overlay" >/dev/null
k wait --for=condition=Established crd/adminapis.aistreams.io --timeout=60s >/dev/null
k -n adminapi-operator rollout status deployment/adminapi-operator --timeout=180s

step "the sample AdminApi (manifests/sample-adminapi.yaml, image $SERVICE_IMAGE) in namespace $NS"
k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
# Its pods run under the restricted Pod Security Standard, enforced by the API server.
k label namespace "$NS" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
k -n "$NS" create secret generic admin-api-secrets --dry-run=client -o yaml \
  --from-literal=database-url="${DATABASE_URL/127.0.0.1/$BRIDGE_IP}" \
  --from-literal=redis-url="${REDIS_URL/127.0.0.1/$BRIDGE_IP}" \
  --from-literal=llm-endpoint="$LLM_ENDPOINT_FOR_PODS" --from-literal=llm-model="$LLM_MODEL" | k apply -f - >/dev/null
k -n "$NS" create secret generic admin-api-minio --dry-run=client -o yaml \
  --from-literal=access-key="$S3_ACCESS_KEY" --from-literal=secret-key="$S3_SECRET_KEY" | k apply -f - >/dev/null
# The sample with our image, this machine's S3 server and embedding model, smaller CPU requests (the guide's
# 500m per pod, plus one more pod during a rollout, do not fit a 2-core node), and documents on. No Qdrant
# server can be installed here, so the index is the embedded one, which one process only can open: one replica
# (with qdrant.host set, the guide's three).
$BIN/python - manifests/sample-adminapi.yaml "$SERVICE_IMAGE" "$BRIDGE_IP:$S3_PORT" "$EMBEDDINGS_ENDPOINT_FOR_PODS" \
  "$EMBEDDING_MODEL" >"$RUN/sample-adminapi.yaml" <<'PY'
import sys, yaml
sample, image, s3, embeddings, model = sys.argv[1:]
doc = yaml.safe_load(open(sample))
spec = doc["spec"]
spec.update(image=image, replicas=1, rollout={"timeoutSeconds": 90}, resources={"requests": {"cpu": "100m"}})
spec.pop("qdrant")
spec["minio"]["endpoint"] = s3
spec["embeddings"] = {"endpoint": embeddings, "model": model}
# The local model reads 256 word pieces at most: chunks of 180 words and punctuation fit it (README, Local models).
spec["env"] = [{"name": "CHUNK_TOKENS", "value": "180"}, {"name": "CHUNK_OVERLAP_TOKENS", "value": "30"}]
print(yaml.safe_dump(doc, sort_keys=False))
PY
k apply -f "$RUN/sample-adminapi.yaml" >/dev/null

step "kubectl get adminapi -n $NS (waiting for Ready)"
phase=""
for _ in $(seq 300); do
  phase=$(k -n "$NS" get adminapi admin-api -o jsonpath='{.status.phase}')
  [ "$phase" = Ready ] && break
  sleep 1
done
k -n "$NS" get adminapi
k -n "$NS" get pods -o wide
[ "$phase" = Ready ] || { echo "not Ready: kubectl -n adminapi-operator logs deploy/adminapi-operator"; exit 1; }

# Two more tags for the rollouts below: the same image under a new tag, and one that cannot start.
good="${SERVICE_IMAGE%:*}:${SERVICE_IMAGE##*:}-retag"
bad="${SERVICE_IMAGE%:*}:${SERVICE_IMAGE##*:}-broken"
ctr_ images tag --force "$SERVICE_IMAGE" "$good" >/dev/null
if ! ctr_ images ls -q | grep -qxF "$bad"; then
  hack/images/broken.sh "$SERVICE_IMAGE" "$bad"
fi

cat <<TXT

The AdminApi is Ready: a pod of $SERVICE_IMAGE, Ready by its real /health/ready.
Try it (export KUBECONFIG=$PWD/$KC):
  kubectl -n $NS get adminapi,deploy,svc,pods
  kubectl -n $NS port-forward svc/admin-api 8001:8001   # then http://127.0.0.1:8001/ (chat) or /docs
  # log in as the first admin the operator generated:
  kubectl -n $NS get secret admin-api-bootstrap-admin -o jsonpath='{.data.username}' | base64 -d; echo
  kubectl -n $NS get secret admin-api-bootstrap-admin -o jsonpath='{.data.password}' | base64 -d; echo
  # in the page: upload a PDF (or text, Markdown, HTML, DOCX) under Documents, wait for "ready", tick
  # "use my documents" and ask about it: the answer lists its sources (SmolLM2-135M's answers are poor)
  # a good rollout: the same image under a new tag: backup Job to S3, new pods, health gate, Ready
  kubectl -n $NS patch adminapi admin-api --type merge -p '{"spec":{"image":"$good"}}'
  # a bad rollout: a tag whose container exits at once. Its migration Job (the new version's
  # admin-api migrate, run before any pod changes) fails: MigrationFailed, nothing rolled out
  kubectl -n $NS patch adminapi admin-api --type merge -p '{"spec":{"image":"$bad"}}'
  # another: the good image with an unreachable Redis. It migrates, its pods start but /health/ready
  # answers 503: rolled back by itself after rollout.timeoutSeconds (90 s here), the old pods serving throughout
  kubectl -n $NS patch adminapi admin-api --type merge -p '{"spec":{"image":"$good","redis":{"url":"redis://$BRIDGE_IP:1"}}}'
  kubectl -n $NS get adminapi -w                # the phase as it moves
  kubectl -n $NS describe adminapi admin-api    # the story, as Events
  kubectl -n adminapi-operator logs deploy/adminapi-operator
Stop everything: make demo-down
TXT
