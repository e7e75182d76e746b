"""HTTP caching policy as pure functions: no I/O, no mitmproxy import, the clock passed in."""
