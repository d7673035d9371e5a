"""The booking-service's gRPC servicer (apptremind.booking.v1.BookingService).

No RPC is implemented yet: the bridge leaves every method unregistered, so callers get UNIMPLEMENTED.
The RPCs arrive with issue #4.
"""

from __future__ import annotations

SERVICE = "apptremind.booking.v1.BookingService"


class BookingServiceServicer:
    pass
