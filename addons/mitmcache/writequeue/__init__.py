"""Asynchronous write forwarding (asyncproxy's model): routed writes are answered at once, after they
are committed to a durable queue (SQLite or PostgreSQL), and delivered to the upstream in the
background with retries, a rate limit and leases that survive a crash. See docs/write-queue.md."""
