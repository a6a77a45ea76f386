"""Which core modules run compiled, and when their source runs instead.

The build (setup.py) compiles the modules in ``MODULES`` from their own .py
file with Cython in pure-Python mode: the .py stays the only source, the
``.pxd`` beside it gives the types (extension classes with typed slots, C
calls between internal methods). Beside each compiled module the build
writes ``<module file>.sha256``: the digest of the .py and .pxd it was built
from.

Python would import an extension module in preference to the .py beside it,
always. ``install`` puts a finder first on ``sys.meta_path`` that decides
instead, per module:

- ``EDGEPROXY_PURE`` set: the source. The pure path is plain Python
  throughout (codec and core), the one a machine without a compiler runs,
  and CI tests it.
- no compiled module, or its digest does not match the source (a checkout
  edited after its last build): the source, with one line on stderr for the
  stale case, so an edit is never silently shadowed by an older build.
- otherwise the compiled module.

The listed modules are one unit: compiled, they reach each other's
extension types as C structs (``cimport`` in the .pxd files: the exchange
reads its server's, cluster's and connection's fields directly), so a
compiled module beside the source of one it cimports would not even import.
When any listed module has to run its source, every listed module does
(one line on stderr names the first one and why). The compiled core also
cimports the native accounting primitives (``REQUIRES``: the in-flight
counters and the metrics' status and duration counts are C calls); without
that extension the core runs its source too. ``INLINED`` .pxd files (the
clock) are compiled into the modules that cimport them, so they count in
every module's source digest.

A module compiled by an earlier build but no longer in ``MODULES`` is
judged alone the same way (its digest file says it was built as a core
module), so a leftover build never shadows its source either.

``STATE`` records the choice per module name ("compiled" or "source"), for
``edgeproxy --version`` and the ``edgeproxy_build_info`` metric.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys

__all__ = ["INLINED", "MODULES", "REQUIRES", "STATE", "choose", "choose_all", "core_kind", "install", "pure_requested", "source_digest"]

MODULES = ("exchange", "downstream", "upstream", "metrics", "breaker", "pool", "headers", "routing", "balancer", "tls",
           "heads", "deadlines", "admission", "acceptor")
# extension modules (built from native/) whose types the compiled core cimports
REQUIRES = ("_accounting",)
# .pxd files whose inline code is compiled into the core modules that cimport
# them (clock.pxd: the monotonic clock); part of every module's digest
INLINED = ("clock",)
STATE: dict[str, str] = {}
_PACKAGE = "proxy"
_DIR = os.path.dirname(os.path.abspath(__file__))


def pure_requested() -> bool:
    return os.environ.get("EDGEPROXY_PURE", "").strip().lower() not in ("", "0", "false", "no")


def source_digest(py: str) -> str:
    """SHA-256 over a module's .py and (when present) .pxd, and the ``INLINED``
    .pxd files beside it: what a compiled build must match."""
    h = hashlib.sha256()
    here = os.path.dirname(py)
    for path in (py, py[:-3] + ".pxd", *(os.path.join(here, name + ".pxd") for name in INLINED)):
        try:
            with open(path, "rb") as f:
                h.update(f.read())
        except FileNotFoundError:
            pass
    return h.hexdigest()


def _built(directory: str, short: str) -> str | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        built = os.path.join(directory, short + suffix)
        if os.path.exists(built):
            return built
    return None


def choose(directory: str, short: str) -> tuple[str, str]:
    """``("compiled", "")`` or ``("source", why)`` for module ``short`` in ``directory``."""
    if pure_requested():
        return "source", "EDGEPROXY_PURE"
    built = _built(directory, short)
    if built is None:
        return "source", "not compiled"
    try:
        with open(built + ".sha256") as f:
            built_from = f.read().strip()
    except OSError:
        built_from = ""
    if built_from != source_digest(os.path.join(directory, short + ".py")):
        return "source", "stale"
    return "compiled", ""


def choose_all(directory: str, modules, requires=()) -> tuple[str, str, str]:
    """``("compiled", "", "")`` when every one of ``modules`` can run compiled (and every
    extension module in ``requires`` is there), else ``("source", first module that cannot,
    why)``: they run together or not at all."""
    for short in modules:
        kind, why = choose(directory, short)
        if kind != "compiled":
            return kind, short, why
    for short in requires:
        if _built(directory, short) is None:
            return "source", short, "not compiled"
    return "compiled", "", ""


def _say_stale(fullname: str, short: str, running: str) -> None:
    print(f"edgeproxy: the compiled {fullname} was built from another version of {short}.py; "
          f"running {running} (rebuild with: pip install -e .)", file=sys.stderr)


class _Finder:
    def __init__(self, package: str, directory: str, modules, requires=()) -> None:
        self.package, self.directory, self.modules = package, directory, tuple(modules)
        self.requires = tuple(requires)
        self._group = None  # choose_all's answer for the listed modules, decided at the first import

    def find_spec(self, fullname, path=None, target=None):
        pkg, _, short = fullname.rpartition(".")
        if pkg != self.package:
            return None
        if short in self.modules:
            if self._group is None:
                self._group = choose_all(self.directory, self.modules, self.requires)
                _, culprit, why = self._group
                if why == "stale":
                    _say_stale(f"{pkg}.{culprit}", culprit, "the source of the whole core")
                elif culprit in self.requires:
                    print(f"edgeproxy: {pkg}.{culprit} is not compiled; running the source of the whole core "
                          f"(rebuild with: pip install -e .)", file=sys.stderr)
            kind = self._group[0]
        else:
            # a module compiled by an earlier build whose MODULES listed it: its digest still decides
            if not os.path.exists(os.path.join(self.directory, short + ".py")):
                return None
            built = _built(self.directory, short)
            if built is None or not os.path.exists(built + ".sha256"):
                return None
            kind, why = choose(self.directory, short)
            if why == "stale":
                _say_stale(fullname, short, "the source")
        STATE[fullname] = kind
        if kind == "compiled":
            return None  # the normal finders load the extension module
        return importlib.util.spec_from_file_location(fullname, os.path.join(self.directory, short + ".py"))


def install(package: str = _PACKAGE, directory: str = _DIR, modules=MODULES, requires=REQUIRES) -> None:
    """Put the finder for ``package``'s compiled ``modules`` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) and f.package == package for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(package, directory, modules, requires))


def core_kind() -> str:
    """"compiled" when every compiled module in use is compiled, else "source"."""
    for short in MODULES:
        __import__(f"{_PACKAGE}.{short}")
    return "compiled" if all(STATE.get(f"{_PACKAGE}.{m}") == "compiled" for m in MODULES) else "source"
