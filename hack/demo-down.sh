#!/usr/bin/env bash
# `make demo-down`: stop what `make demo` started (the S3 server, the relay, the local LLM, the cluster, the databases).
set -uo pipefail
cd "$(dirname "$0")/.."
for p in .run/demo/relay.pid .run/demo/s3.pid; do
  [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null
  rm -f "$p"
done
rm -f .run/demo/s3.env
hack/models/models.sh stop
hack/cluster/cluster.sh down
.venv/bin/python -m tests.support.services down
