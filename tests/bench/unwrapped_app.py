"""The service's own app with its middleware taken off, on `admin-api serve`'s own server (its guarded protocol):
the point between the service and the bare app (tests/bench/bare_app.py) that splits the service's per-request
cost into its middleware's share and the rest (the server's defences, the routes).

    python -m tests.bench.unwrapped_app serve --host 127.0.0.1 --port PORT    # environment as for admin-api serve
"""

from __future__ import annotations

from admin_api.cli import run_server
from admin_api.core.logging import configure_logging
from admin_api.main import create_app
from admin_api.settings import Settings
from tests.support.serve import serve_arguments


def main() -> None:
    args = serve_arguments()
    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    app.user_middleware.clear()  # before the first request builds the stack
    run_server(app, settings, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
