"""The operator at fleet scale (issue 13), on a kwok cluster of the benchmark's own (tests/bench/fleet.py):

1. by hand, the baseline: per namespace one `kubectl apply` of the rendered objects of its instances (the
   operator's own builders, no ownerReferences, labelled managed-by hand), then `kubectl rollout status` of
   its Deployments; then the same image change as the operator makes it: the backup Jobs, the migration Jobs
   (each waited for with `kubectl wait`), the Deployments, `kubectl rollout status`;
2. the operator (the real `adminapi-operator` process, one --namespace per namespace): per namespace one
   `kubectl apply` of its AdminApis → all Ready; the same apply with a new image → all Ready on it;
3. the operator at rest: its requests per minute, from the API server's audit log.

The baseline runs first, while no operator runs, so neither sees the other's work. The same number of
namespaces and kubectl processes on both sides. RSS and CPU seconds of the operator come from /proc; its
requests, by verb and resource, from the audit log, so each round also shows where the operator's time went.

FLEET_SIZE (default 1000) instances over FLEET_NAMESPACES (default 10); FLEET_STEADY_SECONDS (default 120) of
rest. Printed and written to .run/bench.json, never asserted, but an instance that never gets Ready fails the
benchmark with its status.
"""

from __future__ import annotations

import json
import math
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from kubernetes import client

from adminapi_operator import FIELD_MANAGER, GROUP, PLURAL, VERSION, builders
from adminapi_operator.rollout import attempt_id
from adminapi_operator.spec import AdminApiSpec
from tests.bench.fleet import (FleetWatch, GroupStats, KwokCluster, ProcessStats, read_audit, requests_by,
                               requests_by_client)
from tests.bench.report import Figure, Report
from tests.support.kube import REPO_ROOT, wait_for
from tests.support.services import RUN_DIR

pytestmark = [pytest.mark.bench, pytest.mark.kube, pytest.mark.timeout(3 * 3600)]

FLEET_SIZE = int(os.environ.get("FLEET_SIZE", "1000"))
NAMESPACES = int(os.environ.get("FLEET_NAMESPACES", "10"))
STEADY_SECONDS = float(os.environ.get("FLEET_STEADY_SECONDS", "120"))
READY_TIMEOUT = float(os.environ.get("FLEET_READY_TIMEOUT", "1800"))
OPERATOR = Path(sys.executable).with_name("adminapi-operator")
CRD_FILE = REPO_ROOT / "crds" / "adminapi.aistreams.io.yaml"
OLD, NEW = "admin-api:1.0.0", "admin-api:1.1.0"
# The guide's sample AdminApi (3 replicas, backups on), with the gate on the Deployment only: kwok's pods run
# nothing that could answer a health check, and `kubectl rollout status` asks none either. No gate deadline
# short of the benchmark's own, as `rollout status` has none: 1,000 rollouts at once on 2 cores took the
# controllers ~280 s by hand, and the sample's 300 s rolled most of the fleet back.
SPEC = {**yaml.safe_load((REPO_ROOT / "manifests" / "sample-adminapi.yaml").read_text())["spec"],
        "rollout": {"healthChecks": False, "timeoutSeconds": int(READY_TIMEOUT)}}
HAND = {"app.kubernetes.io/managed-by": "hand"}
LOG = RUN_DIR / "bench" / "fleet-operator.log"


def names(prefix: str) -> list[str]:
    return [f"fleet-{prefix}-{i}" for i in range(NAMESPACES)]


def per_namespace() -> list[int]:
    """How many instances each namespace holds (FLEET_SIZE spread evenly)."""
    return [FLEET_SIZE // NAMESPACES + (1 if i < FLEET_SIZE % NAMESPACES else 0) for i in range(NAMESPACES)]


@pytest.fixture(scope="module")
def cluster() -> KwokCluster:
    # Room for both fleets' pods (3 replicas, a surge pod and a Job's at a time, 500m and 512Mi each) on nodes
    # of 1k CPU and 1 TiB: about 1,800 pods a node, kept at 1,000.
    nodes = max(2, math.ceil(FLEET_SIZE * 2 * 5 / 1000))
    kwok = KwokCluster(f"fleet-{os.getpid()}", RUN_DIR / "bench" / f"fleet-kwok-{os.getpid()}", nodes)
    try:
        kwok.start()
        kwok.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
        # Polled: `kubectl wait` fails outright while the CRD has no conditions yet.
        wait_for(lambda: "True" in kwok.kubectl(
            "get", "crd", f"{PLURAL}.{GROUP}", "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}",
            check=False).stdout, timeout=60, interval=0.5, what="the AdminApi CRD to be established")
        namespaces = names("op") + names("hand")
        kwok.kubectl("apply", "-f", "-", input=_list([{"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": ns}} for ns in namespaces]))
        for ns in namespaces:  # pods are refused until the ServiceAccount controller made `default`
            wait_for(lambda: kwok.kubectl("-n", ns, "get", "sa", "default", check=False).returncode == 0,
                     timeout=60, interval=0.5, what=f"ServiceAccount default in {ns}")
        yield kwok
    finally:
        kwok.stop()


def _list(items: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def in_parallel(work: Callable[[int], None]) -> None:
    """`work(i)` for every namespace at once, each in a thread (each runs kubectl processes); re-raises."""
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001
            failures.append(e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(NAMESPACES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


# --- the baseline: the same objects by hand ---------------------------------------------------------------

def _by_hand(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].pop("ownerReferences", None)
    obj["metadata"]["labels"].update(HAND)  # not ours: the operator would ignore it (it does not watch here)
    return obj


def hand_objects(ns: str, uid: str, count: int, image: str) -> list[dict[str, Any]]:
    objects = []
    for n in range(count):
        name = f"api-{n}"
        owner = builders.Owner(name=name, namespace=ns, uid=uid)
        spec = AdminApiSpec.parse({**SPEC, "image": image}, name)
        objects += [builders.bootstrap_secret(owner, "admin", "x" * 24), builders.service(owner, spec),
                    builders.pod_disruption_budget(owner, spec),
                    builders.deployment(owner, spec, builders.pod_template(name, spec))]
    return [_by_hand(o) for o in objects]


def hand_jobs(ns: str, uid: str, count: int, old: str, new: str) -> tuple[list[dict], list[dict], list[dict]]:
    """What the operator's rollout writes, rendered by its builders: backup Jobs (old image and settings),
    migration Jobs (new), and the Deployments on the new template."""
    backups, migrations, deployments = [], [], []
    for n in range(count):
        name = f"api-{n}"
        owner = builders.Owner(name=name, namespace=ns, uid=uid)
        spec = AdminApiSpec.parse({**SPEC, "image": new}, name)
        template = builders.pod_template(name, spec)
        attempt = attempt_id(builders.template_hash(template), 1)
        key = builders.backup_key(ns, name, old, attempt, "2026-01-01T00:00:00Z")
        backups.append(_by_hand(builders.backup_job(owner, spec, old, attempt, key)))
        migrations.append(_by_hand(builders.migration_job(owner, spec, attempt)))
        deployments.append(_by_hand(builders.deployment(owner, spec, template)))
    return backups, migrations, deployments


# --- the operator --------------------------------------------------------------------------------------

def adminapis(ns: str, count: int, image: str) -> list[dict[str, Any]]:
    return [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "AdminApi", "metadata": {"name": f"api-{n}", "namespace": ns},
             "spec": {**SPEC, "image": image}} for n in range(count)]


def start_operator(cluster: KwokCluster) -> subprocess.Popen:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    LOG.parent.mkdir(parents=True, exist_ok=True)
    args = [str(OPERATOR), "--log-format", "plain", f"--liveness=http://127.0.0.1:{port}/healthz"]
    if os.environ.get("FLEET_OPERATOR_VERBOSE"):
        args.append("--verbose")
    for ns in names("op"):
        args += ["--namespace", ns]
    with open(LOG, "w") as log:
        process = subprocess.Popen(args, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
                                   stdout=log, stderr=subprocess.STDOUT)

    def alive() -> bool:
        assert process.poll() is None, f"the operator exited ({process.returncode}); see {LOG}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    wait_for(alive, timeout=60, interval=0.5, what="the operator's liveness endpoint")
    return process


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


def ready_on(image: str) -> Callable[[dict[str, Any]], bool]:
    """Ready, with `image` the last good one and no rollout under way."""
    return lambda obj: (_status(obj).get("phase") == "Ready" and _status(obj).get("lastGoodImage") == image
                        and not _status(obj).get("rollout"))


def rolled_out(image: str) -> Callable[[dict[str, Any]], bool]:
    """A Deployment on `image` whose rollout is complete, as `kubectl rollout status` means it."""
    def complete(dep: dict[str, Any]) -> bool:
        spec, status = dep.get("spec") or {}, _status(dep)
        want = spec.get("replicas", 1)
        return (spec["template"]["spec"]["containers"][0]["image"] == image
                and status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
                and status.get("updatedReplicas") == want and status.get("replicas") == want
                and status.get("availableReplicas") == want)
    return complete


def describe(obj: dict[str, Any]) -> str:
    s = _status(obj)
    return (f"phase={s.get('phase')!r} ready={s.get('ready')!r} lastGoodImage={s.get('lastGoodImage')!r} "
            f"message={s.get('message')!r}")


class PhaseClock:
    """When each instance first showed each status.phase (rollout steps are phases too), from `reset`."""

    def __init__(self) -> None:
        self.first: dict[str, dict[str, float]] = {}
        self.start = time.monotonic()

    def reset(self) -> None:
        self.first, self.start = {}, time.monotonic()

    def __call__(self, obj: dict[str, Any]) -> None:
        phase = _status(obj).get("phase")
        if phase:
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            self.first.setdefault(key, {}).setdefault(phase, time.monotonic() - self.start)

    def summary(self) -> dict[str, dict[str, float]]:
        """For each phase: how many instances showed it, and when they first did (median, last), in seconds."""
        by_phase: dict[str, list[float]] = {}
        for phases in self.first.values():
            for phase, at in phases.items():
                by_phase.setdefault(phase, []).append(at)
        return {phase: {"instances": len(ts), "median_s": round(statistics.median(ts), 1), "last_s": round(max(ts), 1)}
                for phase, ts in sorted(by_phase.items(), key=lambda kv: statistics.median(kv[1]))}


def children_cpu() -> float:
    """CPU seconds of this process's finished children: the kubectl processes of the baseline."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- the benchmark --------------------------------------------------------------------------------------

def test_operator_at_fleet_scale(cluster: KwokCluster, bench_report: Report, capsys) -> None:
    counts = per_namespace()
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    uids = {ns: core.read_namespace(ns).metadata.uid for ns in names("hand")}  # owners of nothing: any uid will do
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        with capsys.disabled():
            print(line, flush=True)

    say(f"\nfleet: {FLEET_SIZE} instances over {NAMESPACES} namespaces, {cluster.nodes} kwok nodes; "
        f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    # What each round cost the cluster's own processes: where the time goes when the API server is the bottleneck.
    control_plane = GroupStats(cluster.components())
    control_plane_cpu: dict[str, dict[str, float]] = {}

    def cluster_cpu(what: str, client_cpu: float, seconds: float) -> str:
        """The control plane's CPU in a round, and all of it with the client's (kubectl or the operator): on
        these 2 cores a round's wall time follows its CPU."""
        control_plane_cpu[what] = used = control_plane.since_start()
        busy = sum(used.values()) + client_cpu
        return ("control plane CPU " + ", ".join(f"{name} {cpu:.1f} s" for name, cpu in sorted(used.items()))
                + f"; with the client's, {busy:.0f} CPU-s: {busy / seconds:.2f} cores busy")

    # 1. By hand (no operator running yet).
    hand_done: dict[str, float] = {}

    def timed(step: str, t0: float) -> None:
        hand_done[step] = max(hand_done.get(step, 0.0), time.monotonic() - t0)

    windows: dict[str, tuple[float, float]] = {}  # each round's wall-clock window, for the audit log
    control_plane.start()
    cpu0, t0, wall0 = children_cpu(), time.monotonic(), time.time()

    def rollout_status_by_hand(ns: str) -> None:
        cluster.kubectl("-n", ns, "rollout", "status", "deployment", "-l", "app.kubernetes.io/managed-by=hand",
                        f"--timeout={READY_TIMEOUT:.0f}s", timeout=READY_TIMEOUT + 60)

    def create_by_hand(i: int) -> None:
        ns = names("hand")[i]
        cluster.kubectl("apply", "-f", "-", input=_list(hand_objects(ns, uids[ns], counts[i], OLD)))
        timed("applied", t0)
        rollout_status_by_hand(ns)
        timed("rolled out", t0)
    in_parallel(create_by_hand)
    hand_create, hand_create_steps, hand_create_cpu = time.monotonic() - t0, dict(hand_done), children_cpu() - cpu0
    windows["by hand: create"] = (wall0, time.time())
    say(f"by hand: apply + rollout status of {FLEET_SIZE} instances' objects: {hand_create:.1f} s "
        f"(applies done at {hand_create_steps['applied']:.1f} s), kubectl CPU {hand_create_cpu:.1f} s; "
        f"{cluster_cpu('by hand: create', hand_create_cpu, hand_create)}")

    hand_done.clear()
    control_plane.start()
    cpu0, t0, wall0 = children_cpu(), time.monotonic(), time.time()

    def change_by_hand(i: int) -> None:
        ns = names("hand")[i]
        backups, migrations, deployments = hand_jobs(ns, uids[ns], counts[i], OLD, NEW)
        for component, jobs in (("backup", backups), ("migrate", migrations)):
            cluster.kubectl("apply", "-f", "-", input=_list(jobs))
            cluster.kubectl("-n", ns, "wait", "job", "-l", f"app.kubernetes.io/component={component}",
                            "--for=condition=Complete", f"--timeout={READY_TIMEOUT:.0f}s", timeout=READY_TIMEOUT + 60)
            timed(f"{component} Jobs complete", t0)
        cluster.kubectl("apply", "-f", "-", input=_list(deployments))
        rollout_status_by_hand(ns)
        timed("rolled out", t0)
    in_parallel(change_by_hand)
    hand_change, hand_change_steps, hand_change_cpu = time.monotonic() - t0, dict(hand_done), children_cpu() - cpu0
    windows["by hand: image change"] = (wall0, time.time())
    say(f"by hand: image change (backup Jobs, migration Jobs, Deployments, rollout status): {hand_change:.1f} s "
        f"({', '.join(f'{k} at {v:.1f} s' for k, v in hand_change_steps.items())}), kubectl CPU {hand_change_cpu:.1f} s; "
        f"{cluster_cpu('by hand: image change', hand_change_cpu, hand_change)}")
    # The operator's rounds run on the cluster the baseline had: the hand fleet (Deployments, pods, Jobs) goes
    # first, or the controllers and kwok would carry twice the objects through the operator's rounds.
    t0 = time.monotonic()
    cluster.kubectl("delete", "namespace", *names("hand"), "--wait=true", f"--timeout={READY_TIMEOUT:.0f}s",
                    timeout=READY_TIMEOUT + 60)
    say(f"by hand: its fleet deleted (namespaces gone) in {time.monotonic() - t0:.1f} s")

    # 2. The operator.
    clock = PhaseClock()
    custom = client.CustomObjectsApi(api)

    def list_adminapis(**kwargs: Any) -> Any:
        return custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)
    fleet = FleetWatch(list_adminapis, set(names("op")), on_change=clock).start()
    apps = client.AppsV1Api(api)

    def list_deployments(**kwargs: Any) -> Any:
        return apps.list_deployment_for_all_namespaces(
            label_selector=f"app.kubernetes.io/managed-by={FIELD_MANAGER}", **kwargs)
    # When each instance's Deployment completed its rollout, as `rollout status` sees it: the operator's lag is
    # from then to its AdminApi's Ready (the controllers' and kwok's share of a round is before).
    deployments = FleetWatch(list_deployments, set(names("op"))).start()
    operator = start_operator(cluster)
    stats = ProcessStats(operator.pid)
    try:
        time.sleep(3)  # its watches are up and it is idle
        idle = stats.sample()
        say(f"operator idle: RSS {idle.rss_mib:.0f} MiB, CPU {idle.cpu_seconds:.1f} s")

        rounds: dict[str, dict[str, Any]] = {}

        def operator_round(what: str, image: str) -> float:
            before, wall0 = stats.sample(), time.time()
            fleet.expect(ready_on(image))
            deployments.expect(rolled_out(image))
            clock.reset()
            control_plane.start()
            t0 = time.monotonic()
            applied: list[float] = []

            def apply(i: int) -> None:
                ns = names("op")[i]
                cluster.kubectl("apply", "-f", "-", input=_list(adminapis(ns, counts[i], image)))
                applied.append(time.monotonic() - t0)
            in_parallel(apply)
            met = fleet.wait(FLEET_SIZE, READY_TIMEOUT, describe)
            took = max(met.values()) - t0
            rolled = deployments.met()
            lag = sorted(met[key] - rolled[key] for key in met if key in rolled)
            after = stats.sample()
            times = sorted(t - t0 for t in met.values())
            rounds[what] = {"seconds": took, "applied_s": max(applied), "wall": (wall0, time.time()),
                            "instances_ready_s": {"p50": times[len(times) // 2], "p90": times[int(len(times) * 0.9)],
                                                  "last": times[-1]},
                            "deployment_rolled_out_to_ready_s": {
                                "instances": len(lag), "p50": lag[len(lag) // 2] if lag else None,
                                "p90": lag[int(len(lag) * 0.9)] if lag else None, "max": lag[-1] if lag else None},
                            "cpu_s": after.cpu_seconds - before.cpu_seconds, "rss_mib": after.rss_mib,
                            "peak_rss_mib": after.peak_rss_mib, "phases": clock.summary()}
            say(f"operator: {what}: all {FLEET_SIZE} Ready in {took:.1f} s (applies done at {max(applied):.1f} s; "
                f"half Ready at {rounds[what]['instances_ready_s']['p50']:.1f} s), CPU {rounds[what]['cpu_s']:.1f} s, "
                f"RSS {after.rss_mib:.0f} MiB (peak {after.peak_rss_mib:.0f}); "
                f"{cluster_cpu(f'operator: {what}', rounds[what]['cpu_s'], took)}")
            if lag:
                say(f"  from its Deployment rolled out to its AdminApi Ready (s): median {lag[len(lag) // 2]:.1f}, "
                    f"p90 {lag[int(len(lag) * 0.9)]:.1f}, max {lag[-1]:.1f} ({len(lag)} instances)")
            say(f"  first seen in each phase (median, last; s): "
                + ", ".join(f"{p} {v['median_s']}/{v['last_s']}" for p, v in rounds[what]["phases"].items()))
            return took

        op_create = operator_round("create", OLD)
        op_change = operator_round("image change", NEW)

        # 3. At rest: nothing changes; every request it makes now is one it makes all the time.
        time.sleep(5)
        rest0 = time.time()
        time.sleep(STEADY_SECONDS)
        rest1 = time.time()
        time.sleep(2)  # the last requests reach the audit log
        rest = stats.sample()
    finally:
        fleet.stop()
        deployments.stop()
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()

    audit = read_audit(cluster.audit_log)
    steady = requests_by(audit, rest0, rest1)
    steady_requests = sum(n for (verb, _), n in steady.items() if verb != "watch")
    per_minute = steady_requests * 60 / (rest1 - rest0)
    for what, r in rounds.items():
        r["requests"] = {f"{verb} {res}": n for (verb, res), n in requests_by(audit, *r["wall"]).most_common()}
        say(f"operator requests during {what}: {sum(r['requests'].values())} "
            f"({', '.join(f'{k} {v}' for k, v in list(r['requests'].items())[:10])})")
    say(f"operator at rest for {rest1 - rest0:.0f} s: {steady_requests} requests ({per_minute:.0f}/min; "
        f"{dict(Counter({f'{v} {r}': n for (v, r), n in steady.items()}).most_common(8))}), "
        f"RSS {rest.rss_mib:.0f} MiB, peak {rest.peak_rss_mib:.0f} MiB, CPU {rest.cpu_seconds:.1f} s in all")
    windows.update({f"operator: {what}": r["wall"] for what, r in rounds.items()})
    by_client = requests_by_client(cluster.audit_log, windows)
    for what, counts in by_client.items():
        say(f"every client's requests during {what}: {sum(counts.values())} ("
            + ", ".join(f"{c} {v} {r} {n}" for (c, v, r), n in counts.most_common(14)) + ")")
    say(f"load average at the end {os.getloadavg()[0]:.2f}")

    size = f"{FLEET_SIZE:,}"
    details = {"fleet_size": FLEET_SIZE, "namespaces": NAMESPACES, "nodes": cluster.nodes, "rounds": rounds,
               "control_plane_cpu_s": control_plane_cpu,
               "requests_by_client": {what: {" ".join(k): n for k, n in counts.most_common(40)}
                                      for what, counts in by_client.items()},
               "by_hand": {"create_steps_s": hand_create_steps, "image_change_steps_s": hand_change_steps,
                           "create_kubectl_cpu_s": hand_create_cpu, "image_change_kubectl_cpu_s": hand_change_cpu},
               "operator": {"idle_rss_mib": idle.rss_mib, "rss_mib_at_rest": rest.rss_mib,
                            "peak_rss_mib": rest.peak_rss_mib, "cpu_s": rest.cpu_seconds},
               "log": lines}
    bench_report.add(Figure(
        f"fleet: {size} AdminApis applied -> all Ready", op_create, hand_create, "s",
        "kubectl apply of the same rendered objects + kubectl rollout status (per namespace, in parallel)",
        target="<= 2x", met=op_create / hand_create <= 2, details=details))
    bench_report.add(Figure(
        f"fleet: {size} AdminApis change image -> all Ready", op_change, hand_change, "s",
        "the same rollout by hand: backup Jobs, migration Jobs (kubectl wait), Deployments, rollout status",
        target="<= 2x", met=op_change / hand_change <= 2))
    bench_report.add(Figure(
        f"fleet: operator peak RSS at {size} AdminApis", rest.peak_rss_mib, idle.rss_mib, "MiB",
        "the same operator idle (0 AdminApis)", target="< 256 MiB", met=rest.peak_rss_mib < 256))
    bench_report.add(Figure(
        f"fleet: operator CPU for create + image change of {size}",
        rounds["create"]["cpu_s"] + rounds["image change"]["cpu_s"], hand_create_cpu + hand_change_cpu, "s",
        "CPU of the kubectl processes doing the same by hand"))
    bench_report.add(Figure(
        f"fleet: operator requests/min, {size} AdminApis at rest", per_minute, 0.0, "req/min",
        "kubectl: nothing is sent while nothing changes", compare="delta", target="0/min", met=steady_requests == 0,
        details={"window_s": rest1 - rest0, "requests": {f"{v} {r}": n for (v, r), n in steady.items()}}))
