"""mitmcache: an HTTP caching reverse proxy as a mitmproxy addon.

Layout: ``policy/`` holds the RFC 9111 rules as pure functions (no I/O, no mitmproxy import, clock
passed in); ``store/`` keeps entries behind a small async interface; ``addon.py`` is the mitmproxy glue.
"""
