"""A real Kubernetes control plane for tests (hack/cluster), as pytest fixtures.

    @pytest.mark.kube
    def test_x(kube_api, namespace):
        kubernetes.client.CoreV1Api(kube_api).create_namespaced_config_map(namespace, {...})

Which cluster:
- By default the local one of hack/cluster (etcd, kube-apiserver, kube-controller-manager,
  kube-scheduler, kwok as the kubelets), kubeconfig in .cluster/kubeconfig. If it is not
  answering, the first kube test starts it (`hack/cluster/cluster.sh up`) and leaves it running
  for later runs and for other sessions that may share it meanwhile (`make cluster-down` stops
  it; ADMINAPI_STOP_CLUSTER=1 stops one this session started, at its end). Its binaries are built
  once, before the first test runs, so a cold build does not count against a test's timeout.
- ADMINAPI_TEST_KUBECONFIG=/path/to/kubeconfig runs the kube tests against that cluster instead
  (its current context). A plain KUBECONFIG is ignored on purpose: tests create and delete
  namespaces, and must never land on a cluster nobody chose for them. Tests that need kwok's
  simulated pods (the `local_cluster` fixture) skip there.

The real node (hack/cluster/node.sh): the `real_cluster` fixture, for tests marked `realnode` that need
real containers of our images (probes, Jobs, the gate, restores). It starts the node if it is not up
(`hack/cluster/cluster.sh up real`: one per machine; it takes over a node another checkout left),
builds and imports both images (`hack/images/build.sh`, cached), and leaves the node running. Those
tests skip (one line) only on a machine that cannot run a node (not root, no runc/iptables/buildah).

Kube tests skip (one line) only where Go is absent and KUBEBUILDER_ASSETS is not set: nothing
could build or provide the control plane. Any other failure to start is an error.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO_ROOT / "hack" / "cluster" / "cluster.sh"
BUILD_SH = REPO_ROOT / "hack" / "cluster" / "build.sh"
LOCAL_KUBECONFIG = REPO_ROOT / ".cluster" / "kubeconfig"  # the kwok cluster
NODE_SH = REPO_ROOT / "hack" / "cluster" / "node.sh"
NODE_KUBECONFIG = REPO_ROOT / ".cluster" / "node" / "kubeconfig"  # the real node
IMAGES_SH = REPO_ROOT / "hack" / "images" / "build.sh"
IMAGES_ENV = REPO_ROOT / ".cluster" / "images.env"
BRIDGE_IP = "10.244.0.1"  # the real node's bridge: the only address its pods reach the host on
NO_TOOLCHAIN = (
    "local Kubernetes control plane unavailable: no `go` on PATH and KUBEBUILDER_ASSETS unset "
    "(install Go, or set ADMINAPI_TEST_KUBECONFIG to a cluster)"
)

T = TypeVar("T")


def kubectl_binary() -> str:
    """The machine's kubectl, or the one hack/cluster built where the machine has none."""
    found = shutil.which("kubectl")
    if found:
        return found
    script = f'source "{REPO_ROOT}/hack/cluster/lib.sh" && cluster_binary_path kubectl'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.strip()


def wait_for(condition: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.2, what: str = "") -> T:
    """Polls `condition` until it returns something truthy, and returns that.

    An AssertionError raised by `condition` means "not yet"; the last one is reported if the
    deadline passes, so a timeout says what was last seen rather than just "timed out".
    """
    deadline = time.monotonic() + timeout
    last: str = "condition returned a falsy value"
    while True:
        try:
            result = condition()
            if result:
                return result
            last = f"last value: {result!r}"
        except AssertionError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or 'condition'}: {last}")
        time.sleep(interval)


def _external_kubeconfig() -> Path | None:
    value = os.environ.get("ADMINAPI_TEST_KUBECONFIG", "").strip()
    return Path(value).expanduser() if value else None


def _answers(kubeconfig: Path) -> bool:
    if not kubeconfig.is_file():
        return False
    try:
        api = config.new_client_from_config(config_file=str(kubeconfig))
    except Exception:
        return False
    try:
        client.VersionApi(api).get_code(_request_timeout=3)
        return True
    except Exception:
        return False
    finally:
        api.close()


def _toolchain_available() -> bool:
    return shutil.which("go") is not None or bool(os.environ.get("KUBEBUILDER_ASSETS"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds the control plane's binaries before any test runs (first run only).

    A cold build takes many minutes; done here, it is outside every test's timeout and its
    progress is shown live.
    """
    global _build_failure
    cfg = session.config
    if cfg.option.collectonly or _external_kubeconfig() is not None:
        return
    wants_kwok = any(item.get_closest_marker("kube") for item in session.items)
    wants_node = any(item.get_closest_marker("realnode") for item in session.items) and (
        subprocess.run([str(NODE_SH), "supported"], capture_output=True).returncode == 0)
    if not (wants_kwok or wants_node) or not _toolchain_available():
        return
    if wants_kwok and not wants_node and _answers(LOCAL_KUBECONFIG):
        return
    build_args = ["--node"] if wants_node else []
    if subprocess.run([str(BUILD_SH), "--check", *build_args], capture_output=True).returncode == 0:
        return
    capman = cfg.pluginmanager.getplugin("capturemanager")
    reporter = cfg.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("building the local Kubernetes control plane (first run only; hack/cluster/build.sh)")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        # Progress goes to stderr, live; a failure surfaces in the kubeconfig fixture.
        build = subprocess.run([str(BUILD_SH), *build_args], stdout=subprocess.DEVNULL)
    if build.returncode != 0:
        _build_failure = f"hack/cluster/build.sh failed (exit {build.returncode}); its output is above the test results"


_build_failure: str | None = None


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    """Path of a kubeconfig for the test cluster (see the module doc for which one)."""
    external = _external_kubeconfig()
    if external is not None:
        if not _answers(external):
            pytest.fail(f"ADMINAPI_TEST_KUBECONFIG={external}: that cluster does not answer", pytrace=False)
        yield external
        return

    if _answers(LOCAL_KUBECONFIG):
        yield LOCAL_KUBECONFIG  # someone else started it: leave it running
        return
    if not _toolchain_available():
        pytest.skip(NO_TOOLCHAIN)
    if _build_failure:
        pytest.fail(_build_failure, pytrace=False)

    up = subprocess.run([str(CLUSTER_SH), "up", "kwok"], capture_output=True, text=True)
    if up.returncode != 0:
        pytest.fail(f"hack/cluster/cluster.sh up failed:\n{up.stdout}{up.stderr[-6000:]}", pytrace=False)
    started = "already up" not in up.stderr  # another session may have won the race
    try:
        yield LOCAL_KUBECONFIG
    finally:
        if started and os.environ.get("ADMINAPI_STOP_CLUSTER", "") in ("1", "true", "yes"):
            subprocess.run([str(CLUSTER_SH), "down", "kwok"], capture_output=True)
        elif started:
            global _left_running
            _left_running = True


_left_running = False


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _left_running:
        terminalreporter.write_line(
            "the local Kubernetes cluster started for these tests is still running (later runs reuse it); "
            "`make cluster-down` stops it"
        )


@pytest.fixture(scope="session")
def local_cluster(kubeconfig: Path) -> Path:
    """The local kwok cluster, whose pods follow hack/cluster/stages; skips on any other cluster."""
    if kubeconfig != LOCAL_KUBECONFIG:
        pytest.skip("needs the local cluster's simulated pods (hack/cluster/stages); ADMINAPI_TEST_KUBECONFIG is set")
    return kubeconfig


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "realnode: needs the real node (hack/cluster/node.sh) and our images")


@dataclass(frozen=True)
class RealCluster:
    kubeconfig: Path
    service_image: str  # localhost/admin-api:HASH, imported into the node
    operator_image: str  # localhost/adminapi-operator:HASH
    bridge_ip: str = BRIDGE_IP

    def ctr(self, *args: str) -> subprocess.CompletedProcess:
        """`ctr` on the node's containerd (the k8s.io namespace, what the kubelet sees)."""
        script = f'source "{REPO_ROOT}/hack/cluster/lib.sh" && echo "$CLUSTER_BIN_DIR/ctr"'
        ctr = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.strip()
        sock = REPO_ROOT / ".cluster" / "node" / "run" / "containerd.sock"
        return subprocess.run([ctr, "--address", str(sock), "-n", "k8s.io", *args], capture_output=True, text=True)


@pytest.fixture(scope="session")
def real_cluster() -> RealCluster:
    """The real node with both images imported (see the module doc); started here if needed."""
    supported = subprocess.run([str(NODE_SH), "supported"], capture_output=True, text=True)
    if supported.returncode != 0:
        why = f"this machine cannot run a real node: {supported.stdout.strip()}"
        if os.environ.get("CLUSTER_RUNTIME") == "real":  # CI asks for the node: never a silent skip there
            pytest.fail(f"CLUSTER_RUNTIME=real, but {why}", pytrace=False)
        pytest.skip(why)
    if not _toolchain_available():
        pytest.skip(NO_TOOLCHAIN)
    up = subprocess.run([str(CLUSTER_SH), "up", "real"], capture_output=True, text=True)
    if up.returncode != 0:
        pytest.fail(f"hack/cluster/cluster.sh up real failed:\n{up.stdout}{up.stderr[-6000:]}", pytrace=False)
    images = subprocess.run([str(IMAGES_SH)], capture_output=True, text=True)
    if images.returncode != 0:
        pytest.fail(f"hack/images/build.sh failed:\n{images.stderr[-6000:]}", pytrace=False)
    env = dict(line.split("=", 1) for line in IMAGES_ENV.read_text().split())
    return RealCluster(NODE_KUBECONFIG, env["SERVICE_IMAGE"], env["OPERATOR_IMAGE"])


@pytest.fixture(scope="session")
def real_api(real_cluster: RealCluster) -> Iterator[client.ApiClient]:
    """A `kubernetes.client.ApiClient` for the real node."""
    api = config.new_client_from_config(config_file=str(real_cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def real_namespace(real_api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the real node, under the restricted Pod Security Standard (enforced)."""
    core = client.CoreV1Api(real_api)
    name = _namespace_name(request.node.name)
    labels = {"aistreams.io/test": "true", "pod-security.kubernetes.io/enforce": "restricted"}
    core.create_namespace({"metadata": {"name": name, "labels": labels}})
    try:
        wait_for(
            lambda: exists(lambda: core.read_namespaced_service_account("default", name)),
            timeout=30,
            what=f"ServiceAccount default in {name}",
        )
        yield name
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def kube_api(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """A `kubernetes.client.ApiClient` configured for the test cluster."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


def _namespace_name(node_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", node_name.lower()).strip("-")
    slug = slug.removeprefix("test-")[:40].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(kube_api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (name derived from the test's), deleted afterwards."""
    core = client.CoreV1Api(kube_api)
    name = _namespace_name(request.node.name)
    core.create_namespace({"metadata": {"name": name, "labels": {"aistreams.io/test": "true"}}})
    try:
        # Pods are refused until the ServiceAccount controller has made `default`.
        wait_for(
            lambda: exists(lambda: core.read_namespaced_service_account("default", name)),
            timeout=30,
            what=f"ServiceAccount default in {name}",
        )
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise


def exists(read: Callable[[], Any]) -> bool:
    """True if the read succeeds, False on 404 (anything else raises)."""
    try:
        read()
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
