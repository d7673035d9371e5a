"""The billing-service's gRPC servicer (apptremind.billing.v1.BillingService).

No RPC is implemented yet: the bridge leaves every method unregistered, so callers get UNIMPLEMENTED.
The RPCs arrive with issue #6.
"""

from __future__ import annotations

SERVICE = "apptremind.billing.v1.BillingService"


class BillingServiceServicer:
    pass
