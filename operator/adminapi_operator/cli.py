"""`adminapi-operator`: run the operator (Kopf underneath) for one namespace, several, or the whole cluster."""
from __future__ import annotations

import argparse
import logging
import sys

import kopf

from .watched import TRUST_SECONDS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="adminapi-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable; globs like 'team-*' work)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", metavar="URL",
                        help="liveness endpoint to serve (default %(default)s; 'none' to disable)")
    parser.add_argument("--log-format", choices=["json", "plain", "full"], default="json")
    parser.add_argument("--verbose", action="store_true", help="debug logs (they never carry secret values)")
    parser.add_argument("--trust-watch-seconds", type=float, default=TRUST_SECONDS, metavar="S",
                        help="how long a reconcile uses what the watches showed of an object without reading it "
                             "from the API (default %(default)s; 0: read every object at every reconcile)")
    args = parser.parse_args(argv)
    if not args.namespace and not args.all_namespaces:
        parser.error("say where to watch: --namespace NS (repeatable) or --all-namespaces")
    return args


class QuietEventHandlers(logging.Filter):
    """Kopf logs "Handler ... succeeded." for every watch event it hands to our handlers (49,029 lines in one
    image change of 1,000 instances, written from the event loop the watches run on). Our handlers only queue a
    reconcile, and the reconcile logs what it does: without --verbose, these lines go."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        return not (message.startswith("Handler ") and message.endswith(" succeeded."))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from . import handlers  # noqa: F401  (registers the handlers)

    kopf.configure(debug=args.verbose, verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    if not args.verbose:
        logging.getLogger("kopf.objects").addFilter(QuietEventHandlers())
    kopf.run(
        standalone=True,  # one replica with the Recreate strategy: no peering needed
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        liveness_endpoint=None if args.liveness == "none" else args.liveness,
        memo=kopf.Memo(trust_watch_seconds=args.trust_watch_seconds),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
