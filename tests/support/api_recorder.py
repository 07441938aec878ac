"""A recording proxy in front of the Kubernetes API server, for tests of what a client really asks.

    with ApiRecorder(kubeconfig) as recorder:       # the client's own credentials pass through unchanged
        run_something(kubeconfig=recorder.kubeconfig(token_kubeconfig, tmp_path / "via-proxy"))
    recorder.requests   # [Request(method, path, query, status, verb, resource), ...]

It listens on loopback (plain HTTP) and forwards every request, streams included (watches), to the
cluster's server over TLS. Each request is named as the API server's authorizer names it: a verb (get, list,
watch, create, update, patch, delete, deletecollection) on a (group, resource[/subresource]).
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import ssl
import threading
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
import yaml
from aiohttp import web

HOP_BY_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade",
              "proxy-connection", "te", "trailer"}


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    status: int

    @property
    def resource(self) -> tuple[str, str] | None:
        """(API group, resource[/subresource]); None for discovery and other non-resource paths."""
        return _parse(self.path)[0]

    @property
    def verb(self) -> str | None:
        resource, named = _parse(self.path)
        if resource is None:
            return None
        if self.method == "GET":
            if not named:
                return "watch" if parse_qs(self.query).get("watch", [""])[0] in ("true", "1") else "list"
            return "get"
        return {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if named else "deletecollection"}.get(self.method, self.method.lower())


def _parse(path: str) -> tuple[tuple[str, str] | None, bool]:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None, False
    if not rest:
        return None, False  # discovery of the group version
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]  # namespaced: /namespaces/NS/RESOURCE[/NAME[/SUBRESOURCE]]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) >= 3 else "")
    return (group, resource), len(rest) >= 2


class ApiRecorder:
    def __init__(self, kubeconfig: Path):
        config = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        self.upstream = cluster["server"].rstrip("/")
        self._ssl = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        self.requests: list[Request] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="api-recorder", daemon=True)
        self.port = 0

    def __enter__(self) -> ApiRecorder:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *_) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def kubeconfig(self, credentials: Path, out: Path) -> Path:
        """`credentials`' kubeconfig (a token), pointed at this proxy."""
        config = yaml.safe_load(Path(credentials).read_text())
        config["clusters"][0]["cluster"] = {"server": f"http://127.0.0.1:{self.port}"}
        out.write_text(yaml.safe_dump(config))
        out.chmod(0o600)
        return out

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)  # open watches are cut
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        await self._session.close()  # ends the streams still open, then their handlers
        await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None, ssl=self._ssl) as upstream:
            self.requests.append(Request(request.method, request.path, request.query_string, upstream.status))
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientError):
                pass  # the client went away mid-stream (a watch it closed)
            return response


def granted(rules: list[dict]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) of RBAC rules."""
    return {(g, r, v) for rule in rules for g in rule.get("apiGroups", []) for r in rule.get("resources", [])
            for v in rule.get("verbs", [])}


def used(requests: list[Request]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) the requests needed. A server-side apply that created its object (201) was
    authorized as `create` too."""
    verbs = {(*r.resource, r.verb) for r in requests if r.resource is not None}
    return verbs | {(*r.resource, "create") for r in requests if r.resource and r.method == "PATCH" and r.status == 201}
