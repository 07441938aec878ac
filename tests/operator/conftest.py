from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from adminapi_operator import GROUP, PLURAL, VERSION
from adminapi_operator.builders import Owner
from tests.support.kube import REPO_ROOT, kubectl_binary, wait_for
from tests.support.serve import ServeProcess, start_serve

CRD_FILE = REPO_ROOT / "crds" / "adminapi.aistreams.io.yaml"
OPERATOR = Path(sys.executable).with_name("adminapi-operator")

# The guide's deployment: the spec of the sample AdminApi users are told to apply.
GUIDE_SPEC = yaml.safe_load((REPO_ROOT / "manifests" / "sample-adminapi.yaml").read_text())["spec"]


@pytest.fixture
def owner() -> Owner:
    return Owner(name="admin-api", namespace="ai-streams", uid="0b7a1d2c-1111-2222-3333-444455556666")


def kubectl(kubeconfig: Path, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([kubectl_binary(), f"--kubeconfig={kubeconfig}", *args], input=input, text=True,
                          capture_output=True, check=check, timeout=60)


@pytest.fixture(scope="session")
def crd(kubeconfig: Path, kube_api: client.ApiClient) -> None:
    """The AdminApi CRD, installed (or updated) once per session, as a user would: kubectl apply."""
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    ext = client.ApiextensionsV1Api(kube_api)

    def established() -> bool:
        conds = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_for(established, timeout=30, what="the AdminApi CRD to be established")


class Operator:
    """`adminapi-operator` as a real process, watching one namespace; can be killed and started again."""

    def __init__(self, kubeconfig: Path, namespace: str, log_path: Path, log_format: str = "plain"):
        self.kubeconfig, self.namespace, self.log_path, self.log_format = kubeconfig, namespace, log_path, log_format
        self.process: subprocess.Popen | None = None
        self.health_port = 0

    def start(self) -> Operator:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.health_port = s.getsockname()[1]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [str(OPERATOR), "--namespace", self.namespace, "--log-format", self.log_format,
             f"--liveness=http://127.0.0.1:{self.health_port}/healthz"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture
def operator(crd: None, kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(kubeconfig, namespace, tmp_path / "operator.log").start()
    try:
        yield op
    finally:
        op.stop()


class AdminApis:
    """Reads and writes AdminApi objects in the test's namespace."""

    def __init__(self, kube_api: client.ApiClient, namespace: str):
        self.api = client.CustomObjectsApi(kube_api)
        self.apps = client.AppsV1Api(kube_api)
        self.core = client.CoreV1Api(kube_api)
        self.batch = client.BatchV1Api(kube_api)
        self.namespace = namespace

    def create(self, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AdminApi",
                "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}
        return self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def get(self, name: str) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec})

    def annotate(self, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        return self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"metadata": {"annotations": annotations}})

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def wait_phase(self, name: str, phase: str, timeout: float = 90) -> dict[str, Any]:
        def reached() -> dict[str, Any]:
            status = self.status(name)
            assert status.get("phase") == phase, f"phase {status.get('phase')!r}: {status.get('message')}"
            return status
        return wait_for(reached, timeout=timeout, interval=0.5, what=f"AdminApi {name} phase {phase}")

    def wait_status(self, name: str, predicate, timeout: float = 120) -> dict[str, Any]:
        def reached() -> dict[str, Any]:
            status = self.status(name)
            assert predicate(status), f"phase {status.get('phase')!r}: {status.get('message')}"
            return status
        return wait_for(reached, timeout=timeout, interval=0.5, what=f"AdminApi {name} status")

    def deployment(self, name: str) -> client.V1Deployment | None:
        try:
            return self.apps.read_namespaced_deployment(name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def image(self, name: str) -> str:
        return self.deployment(name).spec.template.spec.containers[0].image

    def events(self, name: str) -> list[client.CoreV1Event]:
        return [e for e in self.core.list_namespaced_event(self.namespace).items
                if e.involved_object.kind == "AdminApi" and e.involved_object.name == name]

    def event_reasons(self, name: str) -> list[str]:
        return [e.reason for e in sorted(self.events(name), key=lambda e: e.first_timestamp or e.event_time)]


@pytest.fixture
def adminapis(kube_api: client.ApiClient, namespace: str) -> AdminApis:
    return AdminApis(kube_api, namespace)


def wait_until(condition, timeout: float = 60, what: str = ""):
    return wait_for(condition, timeout=timeout, interval=0.5, what=what)


def settle(seconds: float = 3.0) -> None:
    """Give a controller time to (wrongly) act, before asserting that it did not."""
    time.sleep(seconds)


@pytest.fixture
def serve(tmp_path: Path, redis_url: str) -> Iterator[Any]:
    """Starts `admin-api serve` with the given DATABASE_URL (the LLM is never called by the health checks)."""
    started: list[ServeProcess] = []

    def start(database_url: str) -> ServeProcess:
        env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LLM_ENDPOINT": "http://127.0.0.1:9/v1",
               "LLM_MODEL": "unused", "COOKIE_SECURE": "false"}
        started.append(start_serve(env, tmp_path / f"serve-{len(started)}"))
        return started[-1]

    yield start
    for server in started:
        server.stop()
