"""edgeproxy: an HTTP/1.1 edge reverse proxy."""

from . import compiled

compiled.install()  # before any core module is imported: compiled or source (see compiled.py)

__version__ = "0.1.0"
