"""An in-memory Kubernetes API behind the interface of adminapi_operator.kube.Kube, for the reconciler harness.

It behaves like the API server where the reconciler's correctness depends on it: resourceVersions and 409
conflicts on a stale status write, server defaults and canonicalised quantities (`1000m` stored as `1`),
zero values of `omitempty` fields left out (a probe's `initialDelaySeconds: 0`, an env var's `value: ""`),
generations, and controllers played step by step on an injected clock: Deployments roll pods (maxSurge 1,
maxUnavailable 0, progress deadline), pods become ready or not (kwok's sim.aistreams.io labels), wait in
CreateContainerConfigError while a Secret they name is missing (as a kubelet says it), terminate slowly if
asked, Jobs complete or fail. Faults are injected per verb and kind. Every request is counted.
"""
from __future__ import annotations

import copy
import datetime
import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from adminapi_operator import GROUP, KIND, VERSION
from adminapi_operator.builders import TEMPLATE_HASH_LABEL

ADMINAPI = f"{GROUP}/{VERSION}"
NOT_READY = {"sim.aistreams.io/ready": "false"}
FAIL = {"sim.aistreams.io/fail": "true"}


@dataclass
class Fault:
    verb: str | None
    kind: str | None
    status: int
    times: int


def canonical_quantity(value: Any) -> str:
    """The API server's canonical form, enough for the cases that matter: 1000m -> 1, 0.5 -> 500m, 2 -> 2."""
    text = str(value)
    if text.endswith(("Ki", "Mi", "Gi", "Ti")):
        return text
    q = parse_quantity(text)
    if q == q.to_integral_value():
        return str(int(q))
    return f"{int(q * 1000)}m"


def _canonicalise(pod_spec: dict[str, Any]) -> None:
    for c in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        for group in (c.get("resources") or {}).values():
            for k in list(group):
                group[k] = canonical_quantity(group[k])
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        for port in c.get("ports", []):
            port.setdefault("protocol", "TCP")
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    for v in pod_spec.get("volumes", []):
        if "emptyDir" in v and "sizeLimit" in v["emptyDir"]:
            v["emptyDir"]["sizeLimit"] = canonical_quantity(v["emptyDir"]["sizeLimit"])


# Go pointer fields we (or a spec) may set to a zero value: the API server stores them as sent, since nil and
# zero differ there. Every other field is `omitempty` for this purpose, and its zero value is left out.
POINTERS = {"replicas", "maxUnavailable", "maxSurge", "automountServiceAccountToken", "enableServiceLinks",
            "allowPrivilegeEscalation", "runAsNonRoot", "readOnlyRootFilesystem", "runAsUser", "runAsGroup",
            "fsGroup", "terminationGracePeriodSeconds", "progressDeadlineSeconds", "revisionHistoryLimit",
            "optional", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "minAvailable"}
STRING_MAPS = {"labels", "annotations", "matchLabels", "selector", "nodeSelector", "requests", "limits"}


def omit_empty(obj: dict[str, Any]) -> None:
    """What the API server's JSON encoding does to `omitempty` fields: "", 0, false, [] and {} are not stored."""
    for key, value in list(obj.items()):
        if isinstance(value, dict) and key not in STRING_MAPS:  # a string map keeps its "" values
            omit_empty(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    omit_empty(item)
        if key not in POINTERS and value is not None and value in ("", 0, False, [], {}):
            del obj[key]


def _matches(obj: dict[str, Any], labels: dict[str, str]) -> bool:
    have = obj["metadata"].get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


class FakeKube:
    def __init__(self, start: datetime.datetime | None = None):
        self.now = start or datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.timezone.utc)
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int]] = []  # (verb, kind, status code)
        self.faults: list[Fault] = []
        self.termination_seconds = 1.0
        self.ready_after_seconds = 1.0
        self.job_seconds = 2.0
        self.failing_jobs: set[str] = set()  # components (backup, migrate, restore) whose Jobs fail
        self.missing_secrets: set[str] = set()  # Secrets that do not exist, for the kubelet (none is ever read)
        self.on_create: list[Any] = []  # callbacks(obj) when an object is created
        self.on_status: list[Any] = []  # callbacks(status) after a status write
        self._rv = itertools.count(1)
        self._ips = itertools.count(2)
        self._uids = itertools.count(1)
        self._progress_since: dict[tuple[str, str], datetime.datetime] = {}
        # The API server's watch cache, which a list with resourceVersion=0 reads: here the pods as they were
        # before the controllers' last step (a real cache lags by milliseconds; one step is the worst case).
        self.cached_pods: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.list_sources: list[str] = []  # "cache" or "etcd", one per list

    # --- the interface of kube.Kube -----------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._request("patch", obj["kind"])
        meta = obj["metadata"]
        key = (obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        live = self.objects.get(key)
        new = copy.deepcopy(obj)
        self._defaults(new)
        if live is not None:
            new["metadata"].update({k: live["metadata"][k] for k in ("uid", "creationTimestamp", "generation")})
            kept = {k: v for k, v in (live["metadata"].get("annotations") or {}).items() if k.startswith("deployment.")}
            new["metadata"]["annotations"] = {**kept, **(new["metadata"].get("annotations") or {})}
            if live.get("status") is not None:
                new["status"] = live["status"]
            if new.get("spec") != live.get("spec"):
                new["metadata"]["generation"] = live["metadata"]["generation"] + 1
            elif new == live:
                return copy.deepcopy(live)
        else:
            for hook in self.on_create:
                hook(new)
        self._store(key, new)
        return copy.deepcopy(new)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._request("get", kind, allow=(404,))
        obj = self.objects.get((api_version, kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    def list(self, api_version: str, kind: str, namespace: str, labels: dict[str, str],
             from_cache: bool = False) -> list[dict[str, Any]]:
        self._request("list", kind)
        self.list_sources.append("cache" if from_cache else "etcd")
        objects = self.cached_pods if from_cache and kind == "Pod" else self.objects
        return [copy.deepcopy(o) for (a, k, ns, _), o in objects.items()
                if (a, k, ns) == (api_version, kind, namespace) and _matches(o, labels)]

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        meta = obj["metadata"]
        key = (obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        if key in self.objects:
            self._request("post", obj["kind"], code=409)
            return None
        self._request("post", obj["kind"])
        new = copy.deepcopy(obj)
        self._defaults(new)
        for hook in self.on_create:
            hook(new)
        self._store(key, new)
        return copy.deepcopy(new)

    def post_event(self, involved: dict[str, Any], type_: str, reason: str, message: str, key: str | None = None) -> None:
        if key is not None and any(e["key"] == key for e in self.events):
            self._request("post", "Event", code=409)
            return
        self._request("post", "Event")
        self.events.append({"type": type_, "reason": reason, "message": message, "key": key,
                            "name": involved["metadata"]["name"]})

    def get_adminapi(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(ADMINAPI, KIND, namespace, name)

    def patch_adminapi_status(self, namespace: str, name: str, update: dict[str, Any], present: set[str],
                              resource_version: str) -> dict[str, Any]:
        self._request("patch", "AdminApi/status")
        obj = self.objects.get((ADMINAPI, KIND, namespace, name))
        if obj is None:
            raise ApiException(status=404, reason="NotFound")
        if obj["metadata"]["resourceVersion"] != resource_version:
            self.requests[-1] = ("patch", "AdminApi/status", 409)
            raise ApiException(status=409, reason="Conflict")
        status = dict(obj.get("status") or {})
        for k, v in update.items():
            if v is None:
                if k not in present and k in status:
                    raise AssertionError(f"status field {k} present but not said to be")
                status.pop(k, None)
            else:
                status[k] = copy.deepcopy(v)
        obj["status"] = status
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        for hook in self.on_status:
            hook(status)
        return copy.deepcopy(obj)

    # --- what a user does ---------------------------------------------------------------------------

    def create_adminapi(self, name: str, spec: dict[str, Any], namespace: str = "ns",
                        annotations: dict[str, str] | None = None) -> None:
        obj = {"apiVersion": ADMINAPI, "kind": KIND, "metadata": {"name": name, "namespace": namespace,
                                                                   "annotations": annotations or {}},
               "spec": copy.deepcopy(spec)}  # the caller's dict (a module's BASE) is never changed by patch_spec
        self._defaults(obj)
        self._store((ADMINAPI, KIND, namespace, name), obj)

    def adminapi(self, name: str, namespace: str = "ns") -> dict[str, Any]:
        return self.objects[(ADMINAPI, KIND, namespace, name)]

    def patch_spec(self, name: str, patch: dict[str, Any], namespace: str = "ns") -> None:
        obj = self.adminapi(name, namespace)
        spec = obj["spec"]
        for k, v in patch.items():
            if v is None:
                spec.pop(k, None)
            elif isinstance(v, dict) and isinstance(spec.get(k), dict):
                spec[k] = {**spec[k], **v}
            else:
                spec[k] = v
        obj["metadata"]["generation"] += 1
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def annotate(self, name: str, annotations: dict[str, str], namespace: str = "ns") -> None:
        obj = self.adminapi(name, namespace)
        obj["metadata"].setdefault("annotations", {}).update(annotations)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "ns") -> None:
        del self.objects[(api_version, kind, namespace, name)]

    def fail(self, verb: str | None = None, kind: str | None = None, status: int = 500, times: int = 1) -> None:
        """The next `times` requests matching verb and kind (None: any) answer `status`."""
        self.faults.append(Fault(verb, kind, status, times))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for (_, k, _, _), o in self.objects.items() if k == kind]

    def writes(self) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if r[0] not in ("get", "list")]

    def failures(self) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if r[2] >= 400 and not (r[0] == "get" and r[2] == 404)]

    # --- the controllers, one step of `seconds` -----------------------------------------------------

    def tick(self, seconds: float = 1.0) -> None:
        self.now += datetime.timedelta(seconds=seconds)
        self.cached_pods = {k: copy.deepcopy(o) for k, o in self.objects.items() if k[1] == "Pod"}
        for obj in list(self.objects.values()):
            if obj["kind"] == "Deployment":
                self._deployment_controller(obj)
            elif obj["kind"] == "Job":
                self._job_controller(obj)
        for key, obj in list(self.objects.items()):
            deleted = obj["metadata"].get("deletionTimestamp")
            if deleted and self.now >= _parse(deleted) + datetime.timedelta(seconds=self.termination_seconds):
                del self.objects[key]

    def _deployment_controller(self, dep: dict[str, Any]) -> None:
        meta, spec = dep["metadata"], dep["spec"]
        ns, name = meta["namespace"], meta["name"]
        template = spec["template"]
        target = template["metadata"]["labels"][TEMPLATE_HASH_LABEL]
        replicas = spec["replicas"]
        key = (ns, name)
        if self._progress_since.get(key, (None, None))[0] != target:
            self._progress_since[key] = (target, self.now)
        pods = [p for p in self.of_kind("Pod") if p["metadata"]["namespace"] == ns
                and p["metadata"].get("ownerName") == name and not p["metadata"].get("deletionTimestamp")]
        new = [p for p in pods if p["metadata"]["labels"][TEMPLATE_HASH_LABEL] == target]
        old = [p for p in pods if p not in new]
        for _ in range(max(0, min(replicas - len(new), replicas + 1 - len(pods)))):
            self._new_pod(ns, name, template)
        for p in new:
            if not self._kubelet_configures(p):
                continue
            if not _ready(p) and self.now >= _parse(p["metadata"]["creationTimestamp"]) + datetime.timedelta(
                    seconds=self.ready_after_seconds) and not (_matches(p, NOT_READY) or _matches(p, FAIL)):
                p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        ready_new = sum(map(_ready, new))
        keep_old = max(0, replicas - ready_new)
        for p in sorted(old, key=_ready)[:max(0, len(old) - keep_old)]:
            self._terminate(p)
        for p in new[replicas:]:
            self._terminate(p)
        live = [p for p in self.of_kind("Pod") if p["metadata"]["namespace"] == ns
                and p["metadata"].get("ownerName") == name and not p["metadata"].get("deletionTimestamp")]
        new = [p for p in live if p["metadata"]["labels"][TEMPLATE_HASH_LABEL] == target]
        ready = sum(map(_ready, live))
        complete = len(new) == replicas == len(live) and sum(map(_ready, new)) == replicas
        since = self._progress_since[key][1]
        deadline = datetime.timedelta(seconds=spec.get("progressDeadlineSeconds", 600))
        reason = ("NewReplicaSetAvailable" if complete else
                  "ProgressDeadlineExceeded" if self.now - since > deadline else "ReplicaSetUpdated")
        status = {"observedGeneration": meta["generation"], "replicas": len(live), "updatedReplicas": len(new),
                  "readyReplicas": ready, "availableReplicas": ready,
                  "conditions": [{"type": "Progressing", "status": "False" if reason == "ProgressDeadlineExceeded"
                                  else "True", "reason": reason}]}
        if dep.get("status") != status:
            dep["status"] = status
            meta["resourceVersion"] = str(next(self._rv))

    def _new_pod(self, ns: str, owner: str, template: dict[str, Any]) -> None:
        n = next(self._uids)
        name = f"{owner}-{template['metadata']['labels'][TEMPLATE_HASH_LABEL][:6]}-{n}"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "labels": dict(template["metadata"]["labels"]),
                            "ownerName": owner},
               "spec": copy.deepcopy(template["spec"]),
               "status": {"podIP": f"10.0.0.{next(self._ips)}", "conditions": [{"type": "Ready", "status": "False"}]}}
        self._defaults(pod)
        for hook in self.on_create:
            hook(pod)
        self._store(("v1", "Pod", ns, name), pod)

    def _kubelet_configures(self, pod: dict[str, Any]) -> bool:
        """What a kubelet does with a container whose env names a missing Secret: it waits, saying so."""
        missing = [ref["name"] for c in pod["spec"]["containers"] for e in c.get("env", [])
                   if (ref := (e.get("valueFrom") or {}).get("secretKeyRef")) and ref["name"] in self.missing_secrets]
        if not missing:
            pod["status"].pop("containerStatuses", None)
            return True
        waiting = {"reason": "CreateContainerConfigError", "message": f'secret "{missing[0]}" not found'}
        pod["status"]["containerStatuses"] = [{"name": c["name"], "ready": False, "started": False,
                                               "state": {"waiting": waiting}} for c in pod["spec"]["containers"]]
        return False

    def _terminate(self, pod: dict[str, Any]) -> None:
        pod["metadata"]["deletionTimestamp"] = _iso(self.now)
        pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]

    def _job_controller(self, job: dict[str, Any]) -> None:
        if job.get("status", {}).get("conditions"):
            return
        if self.now >= _parse(job["metadata"]["creationTimestamp"]) + datetime.timedelta(seconds=self.job_seconds):
            failed = _matches(job["spec"]["template"], FAIL) or \
                job["metadata"]["labels"].get("app.kubernetes.io/component") in self.failing_jobs
            job["status"] = {"conditions": [{"type": "Failed" if failed else "Complete", "status": "True"}]}
            job["metadata"]["resourceVersion"] = str(next(self._rv))

    # --- plumbing -----------------------------------------------------------------------------------

    def _request(self, verb: str, kind: str, code: int = 200, allow: tuple[int, ...] = ()) -> None:
        for fault in self.faults:
            if fault.times > 0 and fault.verb in (None, verb) and fault.kind in (None, kind):
                fault.times -= 1
                self.requests.append((verb, kind, fault.status))
                raise ApiException(status=fault.status, reason="injected")
        self.requests.append((verb, kind, code))

    def _defaults(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        meta.setdefault("uid", f"uid-{next(self._uids)}")
        meta.setdefault("creationTimestamp", _iso(self.now))
        meta.setdefault("generation", 1)
        if obj["kind"] != KIND and "spec" in obj:
            omit_empty(obj["spec"])
        if obj["kind"] == "Deployment":
            _canonicalise(obj["spec"]["template"]["spec"])
            obj["spec"]["template"]["metadata"].setdefault("creationTimestamp", None)
        elif obj["kind"] == "Job":
            _canonicalise(obj["spec"]["template"]["spec"])
        elif obj["kind"] == "Service":
            obj["spec"].setdefault("clusterIP", "10.96.0.10")
            obj["spec"].setdefault("sessionAffinity", "None")

    def _store(self, key: tuple[str, str, str, str], obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = obj


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _iso(t: datetime.datetime) -> str:
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


__all__ = ["FakeKube", "NOT_READY", "FAIL", "Decimal"]
