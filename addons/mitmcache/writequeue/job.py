"""A queued write: what is kept of the client's request, and what its delivery has come to."""

import enum
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from mitmproxy import http

# RFC 9110 §7.6.1 connection-specific fields, and those that describe this hop's framing.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"content-length",  # the delivery sends the whole body and says its length itself
    }
)
CONTROL_FIELDS = frozenset({b"clear-cache-key"})  # the admin key's own field: never forwarded
IDEMPOTENCY_KEY = "Idempotency-Key"


class State(enum.Enum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    DEAD = "dead"


type Fields = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class NewJob:
    id: str
    method: str
    url: str  # the upstream URL the request was going to
    target: str  # path and query: what ASYNC_ORDERED=url orders by, and what is shown
    fields: Fields  # latin-1 decoded, so any byte survives the round trip
    body: bytes
    idempotency_key: str | None  # the client's own, if it sent one
    fingerprint: str  # what makes a repeated Idempotency-Key the same request
    accepted_at: float


@dataclass(slots=True)
class Job:
    id: str
    state: State
    method: str
    url: str
    target: str
    fields: Fields
    body: bytes
    idempotency_key: str | None
    attempts: int
    last_status: int | None
    last_error: str | None
    accepted_at: float
    next_attempt_at: float | None
    delivered_at: float | None

    @property
    def delivery_key(self) -> str:
        """The Idempotency-Key the upstream gets: the client's, else the job's id."""
        return self.idempotency_key or self.id

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "state": self.state.value,
            "method": self.method,
            "target": self.target,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "accepted_at": rfc3339(self.accepted_at),
            "next_attempt_at": rfc3339(self.next_attempt_at) if self.state is State.QUEUED else None,
            "delivered_at": rfc3339(self.delivered_at),
        }


def rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_fields(fields: Fields) -> str:
    return json.dumps(fields, separators=(",", ":"))


def decode_fields(raw: str) -> Fields:
    return [(name, value) for name, value in json.loads(raw)]


def carries_admin_key(value: bytes, admin_key: str) -> bool:
    """Whether an Authorization value is ``Bearer <admin key>`` (compared in constant time)."""
    scheme, _, token = value.partition(b" ")
    return (
        bool(admin_key)
        and scheme.lower() == b"bearer"
        and hmac.compare_digest(token.strip(), admin_key.encode())
    )


def capture(request: http.Request, admin_key: str) -> NewJob:
    """What is kept of a routed request: method, target, the end-to-end fields (not those of this
    hop, not the admin key's: an Authorization carrying it is the control plane's, not the
    upstream's), the body."""
    fields: Fields = []
    connection_named = {
        token.strip().lower().encode("latin-1")
        for value in request.headers.get_all("connection")
        for token in value.split(",")
    }
    client_key: str | None = None
    for name, value in request.headers.fields:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in CONTROL_FIELDS or lower in connection_named:
            continue
        if lower == b"authorization" and carries_admin_key(value, admin_key):
            continue
        if lower == b"idempotency-key":
            client_key = value.decode("latin-1").strip() or None
            continue  # the delivery sets it, from the client's value or the job id
        fields.append((name.decode("latin-1"), value.decode("latin-1")))
    body = request.raw_content or b""
    target = request.path
    digest = hashlib.sha256()
    for part in (request.method.encode(), target.encode("latin-1", "replace"), body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return NewJob(
        id=str(uuid.uuid4()),
        method=request.method,
        url=request.url,
        target=target,
        fields=fields,
        body=body,
        idempotency_key=client_key,
        fingerprint=digest.hexdigest(),
        accepted_at=time.time(),
    )
