"""``ASYNC_QUEUE_URL``: where the queue lives, ``sqlite:///absolute/path`` or
``postgresql://user[:password]@host:port/db``; its password never shows in logs or answers."""

import enum
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_FILE = "queue.db"


class Kind(enum.Enum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


@dataclass(frozen=True, slots=True)
class QueueURL:
    kind: Kind
    url: str  # as given (PostgreSQL: what the driver connects with)
    path: Path | None = None  # SQLite's file

    @property
    def redacted(self) -> str:
        if self.kind is Kind.SQLITE:
            return self.url
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))


def parse_queue_url(raw: str) -> QueueURL | None:
    """The queue URL, or None for the default (``queue.db`` in the data directory). Raises
    ValueError saying what is wrong, never echoing a password."""
    raw = raw.strip()
    if not raw:
        return None
    if raw.startswith("sqlite://"):
        path = raw[len("sqlite://") :]
        if not path.startswith("/") or path.endswith("/"):
            raise ValueError(
                "sqlite:// must be followed by an absolute file path, as in sqlite:///var/lib/q.db"
            )
        return QueueURL(Kind.SQLITE, raw, Path(path))
    if raw.startswith(("postgresql://", "postgres://")):
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError:
            raise ValueError("a postgresql:// URL with an unreadable host or port") from None
        if not parts.hostname or not parts.username or not parts.path.strip("/"):
            raise ValueError("expected postgresql://user[:password]@host:port/db")
        del port
        return QueueURL(Kind.POSTGRESQL, raw)
    scheme = raw.partition("://")[0] if "://" in raw else raw[:20]
    raise ValueError(f"unsupported queue URL {scheme!r}: use sqlite:///path or postgresql://...")


def default_queue_url(data_dir: Path) -> QueueURL:
    path = data_dir.resolve() / DEFAULT_FILE
    return QueueURL(Kind.SQLITE, f"sqlite://{path}", path)
