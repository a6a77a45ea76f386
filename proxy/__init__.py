"""edgeproxy: an HTTP/1.1 edge reverse proxy."""

__version__ = "0.1.0"
