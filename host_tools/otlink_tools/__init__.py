"""otlink host tools: the `otlink` command and the pieces behind it."""

__version__ = "0.1.0"
