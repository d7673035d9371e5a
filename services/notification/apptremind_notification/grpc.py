"""The notification-service's gRPC servicer (apptremind.notification.v1.NotificationService).

No RPC is implemented yet: the bridge leaves every method unregistered, so callers get UNIMPLEMENTED.
The RPCs arrive with issue #5.
"""

from __future__ import annotations

SERVICE = "apptremind.notification.v1.NotificationService"


class NotificationServiceServicer:
    pass
