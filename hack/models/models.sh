#!/usr/bin/env bash
# The local models as background processes, for `make run` and `make demo` (state and logs in .run/models/):
#   hack/models/models.sh start [llm|embeddings]   start them (default: both) unless running; waits until healthy
#   hack/models/models.sh stop [llm|embeddings]
#   hack/models/models.sh env [llm|embeddings]     their settings for the service: eval "$(hack/models/models.sh env)"
#   hack/models/models.sh ensure                   start what LLM_ENDPOINT / EMBEDDING_MODEL_ENDPOINT do not already
#                                                  point at, and print the settings for those only
#   hack/models/models.sh status
# Where they listen (loopback unless told otherwise; no authentication, so bind only where you mean to):
#   LOCAL_LLM_HOST=127.0.0.1 LOCAL_LLM_PORT=8000 LOCAL_EMBEDDINGS_HOST=127.0.0.1 LOCAL_EMBEDDINGS_PORT=8002
# CPU threads: LOCAL_LLM_THREADS=1 LOCAL_EMBEDDINGS_THREADS=1 (more is slower on a busy 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=.venv/bin/python
RUN=.run/models
START_TIMEOUT=${LOCAL_MODELS_START_TIMEOUT:-180}
LLM_MODEL_NAME=SmolLM2-135M-Instruct
EMBEDDINGS_MODEL_NAME=all-MiniLM-L6-v2-onnx-int8

host() { case $1 in llm) echo "${LOCAL_LLM_HOST:-127.0.0.1}" ;; embeddings) echo "${LOCAL_EMBEDDINGS_HOST:-127.0.0.1}" ;; esac; }
port() { case $1 in llm) echo "${LOCAL_LLM_PORT:-8000}" ;; embeddings) echo "${LOCAL_EMBEDDINGS_PORT:-8002}" ;; esac; }
threads() { case $1 in llm) echo "${LOCAL_LLM_THREADS:-1}" ;; embeddings) echo "${LOCAL_EMBEDDINGS_THREADS:-1}" ;; esac; }
script() { case $1 in llm) echo hack/models/llm_server.py ;; embeddings) echo hack/models/embeddings_server.py ;; esac; }
# The address a client on this machine uses (a wildcard bind is reached on loopback).
client_url() {
  local h; h=$(host "$1")
  case $h in 0.0.0.0 | "::" | "") h=127.0.0.1 ;; esac
  [[ $h == *:* ]] && h="[$h]"
  echo "http://$h:$(port "$1")"
}
running() { [ -s "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
healthy() { curl -fsS --max-time 2 "$(client_url "$1")/health" >/dev/null 2>&1; }

start_one() {
  local name=$1
  if running "$name"; then
    echo "$name: already running ($(client_url "$name")/v1, pid $(cat "$RUN/$name.pid"))" >&2
    return
  fi
  if healthy "$name"; then
    echo "$name: something else already answers on $(client_url "$name"); set LOCAL_${name^^}_PORT to another port" >&2
    return 1
  fi
  [ -x "$PYTHON" ] || { echo "no $PYTHON: run make install first" >&2; return 1; }
  mkdir -p "$RUN"
  OMP_NUM_THREADS=$(threads "$name") nohup "$PYTHON" "$(script "$name")" --host "$(host "$name")" \
    --port "$(port "$name")" --threads "$(threads "$name")" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  for _ in $(seq "$START_TIMEOUT"); do
    if healthy "$name"; then
      echo "$name: $(client_url "$name")/v1 (log: $RUN/$name.log)" >&2
      return
    fi
    if ! running "$name"; then
      echo "$name: failed to start:" >&2
      tail -n 5 "$RUN/$name.log" >&2
      rm -f "$RUN/$name.pid"
      return 1
    fi
    sleep 1
  done
  echo "$name: not healthy after ${START_TIMEOUT}s (log: $RUN/$name.log)" >&2
  stop_one "$name"
  return 1
}

stop_one() {
  local name=$1 pid
  running "$name" || { rm -f "$RUN/$1.pid"; return 0; }
  pid=$(cat "$RUN/$name.pid")
  kill "$pid"
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$RUN/$name.pid"
  echo "$name: stopped" >&2
}

env_one() {
  case $1 in
    llm) printf 'export LLM_ENDPOINT=%s/v1 LLM_MODEL=%s\n' "$(client_url llm)" "$LLM_MODEL_NAME" ;;
    embeddings) printf 'export EMBEDDING_MODEL_ENDPOINT=%s/v1 EMBEDDING_MODEL=%s\n' \
      "$(client_url embeddings)" "$EMBEDDINGS_MODEL_NAME" ;;
  esac
}

names() {
  case ${1:-all} in
    all) echo llm embeddings ;;
    llm | embeddings) echo "$1" ;;
    *) echo "unknown model '$1': llm or embeddings" >&2; exit 2 ;;
  esac
}

command=${1:-}
case $command in
  start) for name in $(names "${2:-}"); do start_one "$name"; done ;;
  stop) for name in $(names "${2:-}"); do stop_one "$name"; done ;;
  env) for name in $(names "${2:-}"); do env_one "$name"; done ;;
  ensure)
    if [ -z "${LLM_ENDPOINT:-}" ]; then start_one llm; env_one llm; fi
    if [ -z "${EMBEDDING_MODEL_ENDPOINT:-}" ]; then start_one embeddings; env_one embeddings; fi
    ;;
  status)
    for name in llm embeddings; do
      if running "$name"; then echo "$name: running, $(client_url "$name")/v1, pid $(cat "$RUN/$name.pid")"
      else echo "$name: stopped"; fi
    done
    ;;
  *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
