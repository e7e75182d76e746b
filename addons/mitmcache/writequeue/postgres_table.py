"""The write queue's table in PostgreSQL: its schema, and the statements and row layout that every
proxy sharing it uses (``postgres_store.py`` runs them)."""

from .store import PENDING_BOUND_SQL, PENDING_COUNT_SQL

TABLE = "mitmcache_jobs"
CHANNEL = "mitmcache_jobs"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    target TEXT NOT NULL,
    fields TEXT NOT NULL,
    body BYTEA NOT NULL,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,
    accepted_at DOUBLE PRECISION NOT NULL,
    next_attempt_at DOUBLE PRECISION,
    delivered_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS {TABLE}_pending ON {TABLE} (seq) WHERE state IN ('queued', 'delivering');
CREATE INDEX IF NOT EXISTS {TABLE}_pending_url ON {TABLE} (url, seq) WHERE state IN ('queued', 'delivering');
CREATE INDEX IF NOT EXISTS {TABLE}_finished ON {TABLE} (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {TABLE}_delivered ON {TABLE} (delivered_at) WHERE delivered_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {TABLE}_state ON {TABLE} (state);
"""

PENDING_BOUND = PENDING_BOUND_SQL.format(table=TABLE)
PENDING_COUNT = PENDING_COUNT_SQL.format(table=TABLE)
DUE = "((j.state = 'queued' AND j.next_attempt_at <= $3) OR (j.state = 'delivering' AND j.lease_until < $3))"
IN_ORDER = (
    f" AND NOT EXISTS (SELECT 1 FROM {TABLE} AS e WHERE e.url = j.url AND e.seq < j.seq"
    " AND e.state IN ('queued', 'delivering'))"
)
REQUEUE = (
    f"UPDATE {TABLE} SET state = 'queued', attempts = 0, next_attempt_at = $1, finished_at = NULL, "
    "lease_owner = NULL, lease_until = NULL"
)
INSERT = (
    f"INSERT INTO {TABLE} (id, state, method, url, target, fields, body, idempotency_key, fingerprint, "
    "accepted_at, next_attempt_at) VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, $9)"
)
