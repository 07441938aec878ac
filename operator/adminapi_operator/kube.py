"""The thin layer that talks to the Kubernetes API (the official `kubernetes` client), on plain dicts."""
from __future__ import annotations

import datetime
import hashlib
import json
import secrets
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from . import FIELD_MANAGER, GROUP, KIND, PLURAL, VERSION


def load_api_client(connections: int) -> kubernetes.client.ApiClient:
    """In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config. `connections` kept open: one per
    thread that sends requests at once (beyond the pool, urllib3 opens a connection, TLS and all, per request)."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    return kubernetes.client.ApiClient(configuration)


# The resources we touch, by (apiVersion, kind): their plural names are fixed, so no discovery request is needed.
PLURALS = {
    ("v1", "Service"): "services", ("v1", "Pod"): "pods", ("v1", "Secret"): "secrets", ("v1", "Event"): "events",
    ("apps/v1", "Deployment"): "deployments", ("batch/v1", "Job"): "jobs",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets", (f"{GROUP}/{VERSION}", KIND): PLURAL,
}


def _path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{PLURALS[(api_version, kind)]}"
    return f"{path}/{name}" if name else path


class Kube:
    """REST calls through the official client's ApiClient (its configuration, credentials, TLS and errors), with
    JSON in and out as plain dicts: no model objects built and converted back for every answer."""

    def __init__(self, api_client: kubernetes.client.ApiClient, request_timeout: float = 30.0):
        self._api_client = api_client
        self._timeout = request_timeout

    def _call(self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None,
              content_type: str = "application/json") -> dict[str, Any]:
        client = self._api_client
        method, url, headers, body, _ = client.param_serialize(
            method, path, query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body, auth_settings=["BearerToken"])
        response = client.call_api(method, url, header_params=headers, body=body, _request_timeout=self._timeout)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=data.decode("utf-8", "replace"), data=None)
        return json.loads(data)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under our field manager; we own the fields we set, and take them back."""
        meta = obj["metadata"]
        return self._call("PATCH", _path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]),
                          query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=obj,
                          content_type="application/apply-patch+yaml")

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", _path(api_version, kind, namespace, name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str, labels: dict[str, str],
             from_cache: bool = False) -> list[dict[str, Any]]:
        """`from_cache`: served from the API server's watch cache as it stands (resourceVersion=0), which may lag
        a moment behind; a consistent list first waits for the cache to catch up with etcd."""
        query = {"labelSelector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}
        if from_cache:
            query["resourceVersion"] = "0"
        return self._call("GET", _path(api_version, kind, namespace), query=query)["items"]

    def post_event(self, involved: dict[str, Any], type_: str, reason: str, message: str,
                   key: str | None = None) -> None:
        """A core/v1 Event on `involved` (an object's metadata and kind), posted now.

        With a `key`, the Event's name derives from it: posting it again (after a crash between an Event and
        the status write that follows it) is a 409, i.e. already done, so the Event exists exactly once.
        """
        meta = involved["metadata"]
        suffix = hashlib.sha256(key.encode()).hexdigest()[:16] if key else secrets.token_hex(8)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name'][:200]}.{suffix}", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            self._call("POST", _path("v1", "Event", meta["namespace"]), body=event)
        except ApiException as e:
            if e.status != 409:
                raise

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create, never overwrite (a generated Secret, a Job): the object created, or None if one of that name
        exists (AlreadyExists)."""
        try:
            return self._call("POST", _path(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"]),
                              query={"fieldManager": FIELD_MANAGER}, body=obj)
        except ApiException as e:
            if e.status == 409:
                return None
            raise

    def get_adminapi(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"{GROUP}/{VERSION}", KIND, namespace, name)

    def patch_adminapi_status(self, namespace: str, name: str, update: dict[str, Any], present: set[str],
                              resource_version: str) -> dict[str, Any]:
        """Set (or, for None, remove) top-level status fields, each replaced whole; returns the AdminApi written.

        A JSON patch, not a merge patch: a merge patch would merge a new pod template into the old one.
        `present` names the fields the status has now (a remove of an absent field is an error). The
        resourceVersion read is a precondition: if the object changed since, the API answers 409.
        """
        ops: list[dict[str, Any]] = [{"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}]
        if not present:
            ops.append({"op": "add", "path": "/status", "value": {}})
        for key, value in update.items():
            path = f"/status/{key}"
            if value is not None:
                ops.append({"op": "add", "path": path, "value": value})
            elif key in present:
                ops.append({"op": "remove", "path": path})
        return self._call("PATCH", _path(f"{GROUP}/{VERSION}", KIND, namespace, name) + "/status", body=ops,
                          content_type="application/json-patch+json")
