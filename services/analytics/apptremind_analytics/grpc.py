"""The analytics-service's gRPC servicer (apptremind.analytics.v1.AnalyticsService).

No RPC is implemented yet: the bridge leaves every method unregistered, so callers get UNIMPLEMENTED.
The RPCs arrive with a later issue.
"""

from __future__ import annotations

SERVICE = "apptremind.analytics.v1.AnalyticsService"


class AnalyticsServiceServicer:
    pass
