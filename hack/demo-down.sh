#!/usr/bin/env bash
# `make demo-down`: stop what `make demo` started (the operator, the service, the cluster, the databases).
set -uo pipefail
cd "$(dirname "$0")/.."
for p in .run/demo/operator.pid .run/demo/service.pid; do
  [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null
  rm -f "$p"
done
hack/cluster/cluster.sh down
.venv/bin/python -m tests.support.services down
