"""`apptremind-dlq list|replay --topic T`: inspect and replay a topic's dead letters."""

from __future__ import annotations

import argparse
import os

from .dlq import list_dead_letters, replay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="apptremind-dlq", description=__doc__)
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument(
        "--topic", required=True, help="the original topic, e.g. booking.reminder.requested.v1"
    )
    parser.add_argument(
        "--bootstrap-servers", default=os.environ.get("APPTREMIND_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    )
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "list":
        for letter in list_dead_letters(args.bootstrap_servers, args.topic):
            print(f"{letter.partition}:{letter.offset}\t{letter.error}")
        return 0
    moved = replay(args.bootstrap_servers, args.topic, limit=args.limit)
    print(f"replayed {moved} message(s) from {args.topic}.dlq to {args.topic}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
