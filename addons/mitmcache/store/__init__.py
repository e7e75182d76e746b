"""Where entries live: a small async interface (``base.Store``) and its implementations."""
