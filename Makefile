# The newcomer's path: `make run` (later `make demo`) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install services services-down cluster cluster-down test run clean

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

cluster: ## local Kubernetes control plane (builds the binaries once), kubeconfig in .cluster/
	hack/cluster/cluster.sh up

cluster-down:
	hack/cluster/cluster.sh down

test: install ## the whole suite; starts PostgreSQL, Redis and the local cluster as needed
	$(BIN)/pytest

clean: services-down cluster-down
	rm -rf $(VENV) .run .cluster
