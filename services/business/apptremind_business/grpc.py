"""The business-service's gRPC servicer (apptremind.business.v1.BusinessService).

No RPC is implemented yet: the bridge leaves every method unregistered, so callers get UNIMPLEMENTED.
The RPCs arrive with issue #3.
"""

from __future__ import annotations

SERVICE = "apptremind.business.v1.BusinessService"


class BusinessServiceServicer:
    pass
