"""The auth-service's gRPC servicer (apptremind.auth.v1.AuthService).

No RPC is implemented yet: the bridge leaves every method unregistered, so callers get UNIMPLEMENTED.
The RPCs arrive with issue #3.
"""

from __future__ import annotations

SERVICE = "apptremind.auth.v1.AuthService"


class AuthServiceServicer:
    pass
