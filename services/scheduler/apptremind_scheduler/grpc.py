"""The scheduler-service's gRPC servicer (apptremind.scheduler.v1.SchedulerService).

No RPC is implemented yet: the bridge leaves every method unregistered, so callers get UNIMPLEMENTED.
The RPCs arrive with issue #5.
"""

from __future__ import annotations

SERVICE = "apptremind.scheduler.v1.SchedulerService"


class SchedulerServiceServicer:
    pass
