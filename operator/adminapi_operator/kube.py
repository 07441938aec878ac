"""The thin layer that talks to the Kubernetes API (the official `kubernetes` client), on plain dicts."""
from __future__ import annotations

import datetime
import functools
import hashlib
import secrets
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from . import FIELD_MANAGER, GROUP, KIND, VERSION


def load_api_client() -> kubernetes.client.ApiClient:
    """In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


class Kube:
    def __init__(self, api_client: kubernetes.client.ApiClient, request_timeout: float = 30.0):
        self._api_client = api_client
        self._timeout = request_timeout

    @functools.cached_property
    def _dynamic(self) -> DynamicClient:
        # Built on first use, not at start-up: its discovery calls may fail while the API server is away.
        return DynamicClient(self._api_client)

    def _resource(self, api_version: str, kind: str):
        return self._dynamic.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under our field manager; we own the fields we set, and take them back."""
        result = self._resource(obj["apiVersion"], obj["kind"]).server_side_apply(
            body=obj,
            namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            _request_timeout=self._timeout,
        )
        return result.to_dict()

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._resource(api_version, kind).get(
                name=name, namespace=namespace, _request_timeout=self._timeout).to_dict()
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        result = self._resource(api_version, kind).get(
            namespace=namespace, label_selector=selector, _request_timeout=self._timeout)
        return [item.to_dict() for item in result.items]

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
            self._resource("v1", "Event").create(body=event, namespace=meta["namespace"], _request_timeout=self._timeout)
        except ApiException as e:
            if e.status != 409:
                raise

    def create_if_absent(self, obj: dict[str, Any]) -> bool:
        """Create once and never overwrite (for generated secrets). True if this call created it."""
        try:
            self._resource(obj["apiVersion"], obj["kind"]).create(
                body=obj, namespace=obj["metadata"]["namespace"], _request_timeout=self._timeout)
            return True
        except ApiException as e:
            if e.status == 409:  # AlreadyExists: someone (maybe our previous run) made it
                return False
            raise

    def get_adminapi(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"{GROUP}/{VERSION}", KIND, namespace, name)

    def patch_adminapi_status(self, namespace: str, name: str, update: dict[str, Any], present: set[str],
                              resource_version: str) -> str:
        """Set (or, for None, remove) top-level status fields, each replaced whole; returns the new resourceVersion.

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
        result = self._resource(f"{GROUP}/{VERSION}", KIND).status.patch(
            body=ops, name=name, namespace=namespace,
            content_type="application/json-patch+json", _request_timeout=self._timeout)
        return result.metadata.resourceVersion
