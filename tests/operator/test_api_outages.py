"""When the API server is away or overloaded, the operator retries in seconds (a real HTTP server answers
503, or nothing listens), instead of failing or waiting Kopf's default minute: `_reconcile` says when to
come back, and the handlers put that into the operator's own queue (never dropped, whatever triggered it)."""
from __future__ import annotations

import http.server
import logging
import socket
import threading

import kopf
import kubernetes

from adminapi_operator.handlers import RETRY_SECONDS, _reconcile
from adminapi_operator.kube import Kube
from adminapi_operator.reconcile import Reconciler


class Overloaded(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the stdlib's name)
        body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable","code":503}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def memo_for(host: str) -> kopf.Memo:
    config = kubernetes.client.Configuration(host=host)
    config.retries = 0
    kube = Kube(kubernetes.client.ApiClient(config), request_timeout=5)
    return kopf.Memo(reconciler=Reconciler(kube, check_health=lambda url: None), locks={})


def test_an_overloaded_api_server_is_retried_soon():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Overloaded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        delay = _reconcile("ns", "name", memo_for(f"http://127.0.0.1:{server.server_port}"), logging.getLogger())
    finally:
        server.shutdown()
    assert delay == RETRY_SECONDS == 5


def test_an_unreachable_api_server_is_retried_soon():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    assert _reconcile("ns", "name", memo_for(f"http://127.0.0.1:{port}"), logging.getLogger()) == RETRY_SECONDS
