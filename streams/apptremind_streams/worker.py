"""`apptremind-streams`: creates the pipeline's topics if missing, then runs the Faust worker.

Extra arguments go to `faust worker`. The worker serves no web port (`--without-web`): health is the process
and its consumer group, and Faust's default port 6066 would collide between workers on one host.
"""

from __future__ import annotations

import sys

from apptremind_notification import consumers
from apptremind_platform.logs import configure_logging
from apptremind_platform.topics import TOPICS, ensure_topics

from .settings import StreamsSettings


def main() -> None:
    settings = StreamsSettings()
    configure_logging("streams", settings.log_level)
    names = consumers.all_topics()
    ensure_topics(settings.kafka.bootstrap_servers, [TOPICS[name] for name in names])
    # Imported after the topics exist: the module builds the Faust app and its agents.
    from .app import app

    sys.argv = [sys.argv[0], "worker", "--without-web", "-l", settings.streams_log_level, *sys.argv[1:]]
    app.main()


if __name__ == "__main__":
    main()
