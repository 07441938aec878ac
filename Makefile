# The newcomer's path: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install services services-down cluster cluster-down images demo demo-down run test bench clean

$(BIN)/python: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/python

install: $(BIN)/python ## Python virtualenv with the project and its test tools

services: install ## PostgreSQL and Redis on loopback, state in .run/
	$(BIN)/python -m tests.support.services up

services-down:
	$(BIN)/python -m tests.support.services down

cluster: ## local Kubernetes: a real node where the machine can (CLUSTER_RUNTIME=kwok: simulated pods)
	hack/cluster/cluster.sh up

cluster-down: ## stop every local cluster of this checkout and undo what the real node did to the machine
	hack/cluster/cluster.sh down

images: ## build Dockerfile.service and Dockerfile.operator (buildah) and import them into the real node
	hack/images/build.sh

demo: install ## the whole product on a real node: images, operator in the cluster, the sample AdminApi Ready
	hack/demo.sh

demo-down: ## stop what `make demo` started
	hack/demo-down.sh

run: services ## just the service on http://127.0.0.1:8001 (LLM_ENDPOINT/LLM_MODEL from your environment)
	eval "$$($(BIN)/python -m tests.support.services env)" && $(BIN)/admin-api migrate && \
	  LLM_ENDPOINT=$${LLM_ENDPOINT:-http://127.0.0.1:8000/v1} LLM_MODEL=$${LLM_MODEL:-demo} COOKIE_SECURE=false \
	  $(BIN)/admin-api serve --host 127.0.0.1 --port 8001

test: install ## the whole suite; starts PostgreSQL, Redis and the local cluster as needed
	$(BIN)/pytest

bench: install ## the measurements, each printed as a ratio against a baseline taken in the same run
	$(BIN)/pytest -m bench -s -q

clean: services-down cluster-down
	rm -rf $(VENV) .run .cluster
