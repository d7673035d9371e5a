"""``apptremind-stack up|down|status``: the command behind ``make up``, ``make down`` and ``make status``."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from .stack import DEFAULT_TIMEOUT_S, SERVICES, STATE_DIR_ENV, Stack, StackError, bootstrap_from_env

_EPILOG = f"""\
state directory: <repo>/.stack, or ${STATE_DIR_ENV}
ports (defaults in brackets), each overridable by the environment:
  APPTREMIND_PG_PORT [15432]   APPTREMIND_KAFKA_PORT [19092]   APPTREMIND_KAFKA_CONTROLLER_PORT [19093]
  APPTREMIND_EDGE_PORT [8080]   APPTREMIND_SMTP_SINK_PORT [2525]   APPTREMIND_SMS_SERVER_PORT [8090]
  APPTREMIND_<SVC>_GRPC_PORT [50051..50057]   APPTREMIND_<SVC>_HTTP_PORT [9101..9107]
  APPTREMIND_<SVC>_RELAY_HTTP_PORT [9201..9207]   with <SVC> one of {", ".join(s.upper() for s in SERVICES)}
APPTREMIND_PG_DSN uses an existing Postgres (superuser DSN) instead of starting one.
APPTREMIND_SCHEDULER_WORKERS sets the scheduler's worker tasks (its DB pool grows to workers + 4).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apptremind-stack",
        description="Run the ApptRemind platform locally, without Docker.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start everything (idempotent), wait until healthy, print addresses")
    up.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds to wait for every process to become healthy (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    commands.add_parser("down", help="stop everything `up` started; data is kept")
    commands.add_parser("status", help="show each recorded process and whether it is alive and ready")
    commands.add_parser(
        "bootstrap",
        help="prepare an existing Postgres and Kafka: databases, roles, migrations, topics (compose, Helm hook)",
    )
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "bootstrap":
            return bootstrap_from_env()
        stack = Stack()
        if args.command == "up":
            return stack.up(timeout=args.timeout)
        if args.command == "down":
            return stack.down()
        return stack.status()
    except StackError as exc:
        print(f"apptremind-stack {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception:
        # Unexpected (a server that would not start, a failed migration): the traceback is the report.
        traceback.print_exc()
        print(
            f"\napptremind-stack {args.command} failed; `make down` stops whatever did start", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; whatever already started keeps running: `make down` stops it", file=sys.stderr)
        return 130


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
