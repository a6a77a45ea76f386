"""Build script for the optional native (Cython) extensions.

The extensions are an accelerator, never a requirement: without Cython or
a C compiler, or with EDGEPROXY_NO_NATIVE=1 set at build time, the package
installs without them and the pure implementations are used.
"""

import importlib.util
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = [
    ("proxy.codec.native", "native/codec.pyx"),
    ("proxy._accounting", "native/accounting.pyx"),
]

_spec = importlib.util.spec_from_file_location("_edgeproxy_compiled", os.path.join("proxy", "compiled.py"))
_compiled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_compiled)
# core modules compiled from their own .py (pure-Python mode, types in the .pxd beside)
CORE = [(f"proxy.{m}", f"proxy/{m}.py") for m in _compiled.MODULES]


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
            return
        if ext.name in dict(CORE):
            # beside the module, what proxy/compiled.py checks before it uses it
            with open(self.get_ext_fullpath(ext.name) + ".sha256", "w") as f:
                f.write(_compiled.source_digest(dict(CORE)[ext.name]) + "\n")

    def copy_extensions_to_source(self):
        """In-place and editable builds: the digests go with the modules."""
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            if ext.name in dict(CORE):
                inplace, built = self._get_inplace_equivalent(build_py, ext)
                if os.path.exists(built + ".sha256"):
                    self.copy_file(built + ".sha256", inplace + ".sha256", level=self.verbose)


def _cythonize(sources, directives, **kw):
    try:
        from Cython.Build import cythonize

        return cythonize([Extension(name, [src], extra_compile_args=["-O2"]) for name, src in sources],
                         compiler_directives=directives, quiet=True, **kw)
    except Exception as exc:
        _warn(f"Cython unavailable or failed ({exc})")
        return []


def extensions():
    if os.environ.get("EDGEPROXY_NO_NATIVE", "").strip() not in ("", "0"):
        return []
    native = [(name, src) for name, src in NATIVE if os.path.exists(src)]
    core = [(name, src) for name, src in CORE if os.path.exists(src)]
    out = _cythonize(native, {"language_level": 3, "boundscheck": False, "wraparound": False, "cdivision": True})
    # Python semantics kept whole (negative indexes, bounds, division) for code that also runs as .py;
    # a core module that fails to compile leaves the codec compiled and that module as source
    # (the generated C goes to build/, not beside the .py, so it is never packaged)
    return out + _cythonize(core, {"language_level": 3}, build_dir=os.path.join("build", "cython"))


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
