"""The parts of the fleet benchmark (tests/bench/test_fleet.py), none of them a mock:

    KwokCluster   a kwok cluster of the benchmark's own (kwokctl, the binaries hack/cluster/build.sh built, the
                  settings of hack/cluster/kwokctl.yaml and its stages), with fake nodes sized so the fleet's
                  pods fit, and the API server's audit log on: who sent which request, and when
    FleetWatch    one list+watch of AdminApis or Deployments: when each object first met a condition
    ProcessStats  RSS, peak RSS and CPU seconds of a process, from /proc
    requests_by   the operator's requests in the audit log, by verb and resource, in a time window
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.support.kube import REPO_ROOT, kubectl_binary, wait_for

CLUSTER_HACK = REPO_ROOT / "hack" / "cluster"
BENCH_AGENT = "fleet-bench"  # the benchmark's own client, told apart from the operator's in the audit log
# What the operator's requests carry: Kopf's (aiohttp) and the official client's user agents.
OPERATOR_AGENTS = ("kopf/", "OpenAPI-Generator/")
# Metadata of every request, once it is answered (a watch: once it ends). Nothing of bodies.
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                "omitStages": ["RequestReceived", "ResponseStarted"], "rules": [{"level": "Metadata"}]}


def cluster_binary(name: str) -> str:
    script = f'source "{CLUSTER_HACK}/lib.sh" && cluster_binary_path {name}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.strip()


class KwokCluster:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as processes on loopback, under a
    KWOK_WORKDIR of its own: the shared cluster of hack/cluster/cluster.sh is never touched.

    Fake nodes get kwok's default capacity (1k CPU, 1 TiB, 1M pods each, hack/cluster/stages/nodes.yaml). The
    components' client rate limits are lifted (kwokctl's disableQPSLimits): the
    controller manager's default 20 requests/s would otherwise pace both the operator and its baseline."""

    def __init__(self, name: str, workdir: Path, nodes: int):
        self.name, self.workdir, self.nodes = name, workdir, nodes
        self.kubeconfig = workdir / "kubeconfig"
        self.cluster_dir = workdir / "clusters" / name
        self.audit_log = self.cluster_dir / "logs" / "audit.log"
        self._env: dict[str, str] = {}

    def start(self) -> KwokCluster:
        build = subprocess.run([str(CLUSTER_HACK / "build.sh")], capture_output=True, text=True)
        if build.returncode != 0:
            raise RuntimeError(f"hack/cluster/build.sh failed:\n{build.stderr[-4000:]}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        apiserver = cluster_binary("kube-apiserver")
        self._env = {
            **os.environ,
            "KWOK_WORKDIR": str(self.workdir),
            "PATH": f"{Path(cluster_binary('kwokctl')).parent}:{os.environ['PATH']}",
            "KWOK_KUBE_APISERVER_BINARY": apiserver,
            "KWOK_KUBE_CONTROLLER_MANAGER_BINARY": cluster_binary("kube-controller-manager"),
            "KWOK_KUBE_SCHEDULER_BINARY": cluster_binary("kube-scheduler"),
            "KWOK_ETCD_BINARY": cluster_binary("etcd"),
            "KWOK_CONTROLLER_BINARY": cluster_binary("kwok"),
            "KWOK_KUBE_VERSION": subprocess.run([apiserver, "--version"], capture_output=True, text=True,
                                                check=True).stdout.split()[1],
        }
        settings = yaml.safe_load((CLUSTER_HACK / "kwokctl.yaml").read_text())
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        settings["options"].update(kubeAuditPolicy=str(policy), disableQPSLimits=True)
        # Room for 2,000+ Services (the API server's default range, a /24, holds 254).
        settings["componentsPatches"] = [{"name": "kube-apiserver", "extraArgs": [
            {"key": "service-cluster-ip-range", "value": "10.96.0.0/16"}]}]
        (self.workdir / "kwokctl.yaml").write_text(yaml.safe_dump(settings))
        created = subprocess.run(
            [cluster_binary("kwokctl"), "create", "cluster", "--name", self.name, "--kubeconfig=", "--timeout", "5m",
             "--config", str(self.workdir / "kwokctl.yaml"), "--config", str(CLUSTER_HACK / "stages" / "nodes.yaml"),
             "--config", str(CLUSTER_HACK / "stages" / "pods.yaml")],
            env=self._env, capture_output=True, text=True)
        if created.returncode != 0:
            raise RuntimeError(f"kwokctl create cluster failed:\n{created.stdout}{created.stderr[-4000:]}")
        flat = subprocess.run([kubectl_binary(), "--kubeconfig", str(self.cluster_dir / "kubeconfig.yaml"), "config",
                               "view", "--minify", "--flatten"], capture_output=True, text=True, check=True)
        self.kubeconfig.write_text(flat.stdout)
        self.kubeconfig.chmod(0o600)
        wait_for(lambda: self.kubectl("get", "--raw", "/version", check=False).returncode == 0, timeout=120,
                 interval=0.5, what="the bench cluster's API server")
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            _node(f"fleet-node-{i}") for i in range(self.nodes)]}))
        self.kubectl("wait", "node", "--all", "--for=condition=Ready", "--timeout=120s")
        wait_for(lambda: self.kubectl("-n", "default", "get", "serviceaccount", "default", check=False).returncode == 0,
                 timeout=120, interval=0.5, what="the bench cluster's controller manager")
        return self

    def stop(self) -> None:
        if self.cluster_dir.is_dir():
            subprocess.run([cluster_binary("kwokctl"), "delete", "cluster", "--name", self.name,
                            f"--kubeconfig={self.kubeconfig}"], env=self._env or None, capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run([kubectl_binary(), f"--kubeconfig={self.kubeconfig}", *args], input=input, text=True,
                              capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args[:4])}... failed: {done.stderr[-2000:]}")
        return done

    def components(self) -> dict[str, int]:
        """The cluster's processes (etcd, kube-apiserver, ...), by name: those whose command line names its
        directory (their certificates, data and logs are there)."""
        found = {}
        for proc in Path("/proc").iterdir():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:  # not a process, or gone meanwhile
                continue
            if proc.name.isdigit() and any(str(self.cluster_dir).encode() in arg for arg in argv):
                found[Path(argv[0].decode()).name] = int(proc.name)
        return found

    def api_client(self) -> client.ApiClient:
        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        api.user_agent = BENCH_AGENT
        return api


def _node(name: str) -> dict[str, Any]:
    """A fake node run by kwok: no status, so kwok's node-initialize stage gives it its default capacity."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}}}


class FleetWatch:
    """One list+watch of a resource across the cluster; records when each object (namespace/name) first meets
    `condition`, from the moment `expect` is called. The watch delivers changes only: cheap at 1,000 objects."""

    def __init__(self, list_call: Callable[..., Any], namespaces: set[str],
                 on_change: Callable[[dict[str, Any]], None] | None = None):
        self._list, self._namespaces, self._on_change = list_call, namespaces, on_change
        self._objects: dict[str, dict[str, Any]] = {}
        self._met: dict[str, float] = {}
        self._condition: Callable[[dict[str, Any]], bool] = lambda _: False
        self._lock = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="fleet-watch", daemon=True)

    def start(self) -> FleetWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True

    def _seen(self, obj: dict[str, Any], deleted: bool = False) -> None:
        meta = obj["metadata"]
        if meta["namespace"] not in self._namespaces:
            return
        key = f"{meta['namespace']}/{meta['name']}"
        with self._lock:
            if deleted:
                self._objects.pop(key, None)
                return
            self._objects[key] = obj
            if self._on_change:
                self._on_change(obj)
            if key not in self._met and self._condition(obj):
                self._met[key] = time.monotonic()
                self._lock.notify_all()

    def _run(self) -> None:
        while not self._stopped:
            try:
                listed = self._list(_preload_content=False)
                body = json.loads(listed.data)
                for item in body["items"]:
                    self._seen(item)
                stream = watch.Watch().stream(self._list, resource_version=body["metadata"]["resourceVersion"],
                                              timeout_seconds=120, _request_timeout=150)
                for event in stream:
                    if self._stopped:
                        return
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._seen(event["raw_object"], deleted=event["type"] == "DELETED")
            except ApiException as e:
                if e.status != 410:  # 410: the watch is too old; list again
                    time.sleep(1)
            except Exception:  # noqa: BLE001 (a dropped connection on a busy machine: list again)
                time.sleep(1)

    def expect(self, condition: Callable[[dict[str, Any]], bool]) -> None:
        """From now on, count the objects that meet `condition` (those that already do count at once)."""
        with self._lock:
            self._condition, self._met = condition, {}
            now = time.monotonic()
            for key, obj in self._objects.items():
                if condition(obj):
                    self._met[key] = now

    def met(self) -> dict[str, float]:
        """When each object met the condition so far."""
        with self._lock:
            return dict(self._met)

    def wait(self, count: int, timeout: float, describe: Callable[[dict[str, Any]], str]) -> dict[str, float]:
        """Until `count` objects met the condition: when each did. Fails with the ones that did not, and why."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._met) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(set(self._objects) - set(self._met))
                    shown = "\n".join(f"  {key}: {describe(self._objects[key])}" for key in missing[:20])
                    raise AssertionError(
                        f"{len(self._met)}/{count} met the condition after {timeout:.0f}s; {len(self._objects)} seen, "
                        f"{len(missing)} not there yet (first 20):\n{shown}")
                self._lock.wait(timeout=min(left, 1.0))
            return dict(self._met)


@dataclass(frozen=True)
class ProcessSample:
    at: float
    rss_mib: float
    peak_rss_mib: float  # VmHWM: the highest RSS so far
    cpu_seconds: float  # user + system, all threads


class ProcessStats:
    def __init__(self, pid: int):
        self.pid = pid
        self._tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> ProcessSample:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.pid}/status").read_text().splitlines())
        stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / self._tick  # utime, stime (fields 14, 15)
        return ProcessSample(time.time(), _kib(fields["VmRSS"]) / 1024, _kib(fields["VmHWM"]) / 1024, cpu)


class GroupStats:
    """CPU seconds of several processes (the cluster's components), by name, between two samples."""

    def __init__(self, pids: dict[str, int]):
        self._stats = {name: ProcessStats(pid) for name, pid in pids.items()}
        self._start: dict[str, float] = {}

    def _cpu(self) -> dict[str, float]:
        return {name: stats.sample().cpu_seconds for name, stats in self._stats.items()}

    def start(self) -> None:
        self._start = self._cpu()

    def since_start(self) -> dict[str, float]:
        return {name: round(cpu - self._start[name], 1) for name, cpu in self._cpu().items()}


def _kib(value: str) -> float:
    return float(value.split()[0])


@dataclass(frozen=True)
class AuditEntry:
    at: float  # when the API server received it (epoch seconds)
    verb: str
    resource: str
    code: int
    agent: str


def read_audit(path: Path, agents: tuple[str, ...] = OPERATOR_AGENTS) -> list[AuditEntry]:
    """The requests of clients with these user agents, from the API server's audit log and the files it rotated
    out (audit-<time>.log: at 1,000 instances the create round's requests were in one)."""
    entries = []
    for part in sorted(path.parent.glob(f"{path.stem}*{path.suffix}")):
        entries += _read_audit_file(part, agents)
    return entries


def _read_audit_file(path: Path, agents: tuple[str, ...]) -> list[AuditEntry]:
    entries = []
    with open(path, encoding="utf-8") as log:
        for line in log:
            if not any(f'"userAgent":"{agent}' in line for agent in agents):
                continue  # cheap filter first: the log holds every component's requests
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", event.get("requestURI", "?").split("?")[0])
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            received = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            entries.append(AuditEntry(received.timestamp(), event["verb"], resource,
                                      (event.get("responseStatus") or {}).get("code", 0), event.get("userAgent", "")))
    return entries


def client_of(agent: str) -> str:
    """A user agent, short: `kube-controller-manager/v1.35.4 (...) .../deployment-controller` is
    `kube-controller-manager:deployment-controller`; `kwok/v0.8.0 (...)` is `kwok`."""
    name = agent.split("/", 1)[0]
    if name == "kube-controller-manager" and "/" in agent:
        name += ":" + agent.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return name


def requests_by_client(path: Path, windows: dict[str, tuple[float, float]]) -> dict[str, Counter]:
    """For each named time window: (client, verb, resource) -> count of every client's requests (streamed: the
    log holds millions at 1,000 instances)."""
    counts = {what: Counter() for what in windows}
    for part in sorted(path.parent.glob(f"{path.stem}*{path.suffix}")):
        with open(part, encoding="utf-8") as log:
            for line in log:
                event = json.loads(line)
                received = datetime.datetime.fromisoformat(
                    event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
                for what, (start, end) in windows.items():
                    if start <= received < end:
                        ref = event.get("objectRef") or {}
                        resource = ref.get("resource", "?") + ("/" + ref["subresource"] if ref.get("subresource") else "")
                        verb = event["verb"]
                        if verb == "list" and "resourceVersion=0" in event.get("requestURI", ""):
                            verb = "list (cache)"  # served from the API server's watch cache, no etcd read
                        counts[what][client_of(event.get("userAgent", "")), verb, resource] += 1
    return counts


def requests_by(entries: list[AuditEntry], start: float, end: float) -> Counter:
    """(verb, resource) -> count of the requests received in [start, end). A watch is logged once it ends, as
    verb `watch`: a stream held open, which the caller keeps apart from requests per minute."""
    return Counter((e.verb, e.resource) for e in entries if start <= e.at < end)
