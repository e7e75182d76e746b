"""The admin key never travels upstream.

``Clear-Cache-Key`` is the control plane's own field: on a request that is not a control request
(no ``Clear-Cache``, not under the admin prefix) it was forwarded upstream, and the answer stored.
``Authorization`` carrying the admin key (``Bearer <key>``, or ``Basic`` with the key as user or
password) is the operator's secret, not a credential of the upstream's. Both are dropped from every
forwarded request, which also keeps them off the flow (``-w`` dumps, mitmweb); control requests,
answered here, have them redacted by the control plane instead.
"""

import base64
import binascii
import hmac

from mitmproxy import http

# Request fields that may carry the admin key (lower-case, as the addon's field-name set has them).
FIELDS = frozenset({b"clear-cache-key", b"authorization"})


def _same(offered: str, admin_key: str) -> bool:
    return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), admin_key.encode())


def carries_admin_key(authorization: str, admin_key: str) -> bool:
    """Whether an ``Authorization`` value's credentials are the admin key, in any scheme."""
    if not admin_key:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    offered = [credentials.strip()]
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8", "surrogateescape")
        except (binascii.Error, ValueError):
            decoded = ""
        user, _, password = decoded.partition(":")
        offered += [user, password]
    return any(_same(value, admin_key) for value in offered if value)


def drop_admin_credentials(request: http.Request, admin_key: str) -> None:
    """Remove ``Clear-Cache-Key``, and every ``Authorization`` line that carries the admin key."""
    headers = request.headers
    if "clear-cache-key" in headers:
        del headers["clear-cache-key"]
    lines = headers.get_all("authorization")
    kept = [line for line in lines if not carries_admin_key(line, admin_key)]
    if len(kept) != len(lines):
        headers.set_all("authorization", kept)
