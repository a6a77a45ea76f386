"""Build script for the optional native (Cython) extensions.

The extensions are an accelerator, never a requirement: without Cython or
a C compiler, or with EDGEPROXY_NO_NATIVE=1 set at build time, the package
installs without them and the pure implementations are used.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = [
    ("proxy.codec.native", "native/codec.pyx"),
    ("proxy._accounting", "native/accounting.pyx"),
]


def _warn(msg: str) -> None:
    print(f"edgeproxy: {msg}; the pure implementation will be used", file=sys.stderr)


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler at all
            _warn(f"native extensions not built ({exc})")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            _warn(f"native extension {ext.name} not built ({exc})")


def extensions():
    if os.environ.get("EDGEPROXY_NO_NATIVE", "").strip() not in ("", "0"):
        return []
    sources = [(name, src) for name, src in NATIVE if os.path.exists(src)]
    if not sources:
        return []
    try:
        from Cython.Build import cythonize

        return cythonize(
            [Extension(name, [src], extra_compile_args=["-O2"]) for name, src in sources],
            compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False,
                                 "cdivision": True},
            quiet=True,
        )
    except Exception as exc:
        _warn(f"Cython unavailable or failed ({exc})")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
