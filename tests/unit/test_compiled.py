"""proxy.compiled: a compiled core module is used only when it was built from the source beside it."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys

import pytest

from proxy import codec, compiled

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def moddir(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEPROXY_PURE", raising=False)
    (tmp_path / "mod.py").write_text("WHO = 'source'\n")
    (tmp_path / "mod.pxd").write_text("cdef int x\n")
    return tmp_path


def fake_build(directory, digest: str | None, module: str = "mod") -> None:
    """An extension file (never imported here) and, unless None, the digest the build writes beside it."""
    built = directory / (module + importlib.machinery.EXTENSION_SUFFIXES[0])
    built.write_bytes(b"\x7fELF not really")
    if digest is not None:
        (directory / (built.name + ".sha256")).write_text(digest + "\n")


def test_no_build_means_source(moddir):
    assert compiled.choose(str(moddir), "mod") == ("source", "not compiled")


def test_build_of_this_source_is_used(moddir):
    fake_build(moddir, compiled.source_digest(str(moddir / "mod.py")))
    assert compiled.choose(str(moddir), "mod") == ("compiled", "")


@pytest.mark.parametrize("edit", ["mod.py", "mod.pxd"])
def test_edited_source_or_types_make_the_build_stale(moddir, edit):
    fake_build(moddir, compiled.source_digest(str(moddir / "mod.py")))
    with open(moddir / edit, "a") as f:
        f.write("# edited after the build\n")
    assert compiled.choose(str(moddir), "mod") == ("source", "stale")


def test_build_without_digest_is_not_trusted(moddir):
    fake_build(moddir, None)
    assert compiled.choose(str(moddir), "mod") == ("source", "stale")


def test_pure_forces_source(moddir, monkeypatch):
    fake_build(moddir, compiled.source_digest(str(moddir / "mod.py")))
    monkeypatch.setenv("EDGEPROXY_PURE", "1")
    assert compiled.choose(str(moddir), "mod") == ("source", "EDGEPROXY_PURE")


def import_with_finder(tmp_path, package: str, module: str, listed: tuple, digest: str, others: dict = {}):
    """Import ``package.module`` in a fresh interpreter with the finder installed for ``listed``
    modules, beside a fake build whose digest is ``digest`` (and fake builds of ``others``:
    module -> digest, ``None`` for that module's own); the completed process."""
    pkg = tmp_path / package
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, d in [(module, digest), *others.items()]:
        (pkg / f"{name}.py").write_text("WHO = 'source'\n")
        # a build of something else (importing it would fail), with the digest of this source when None
        fake_build(pkg, compiled.source_digest(str(pkg / f"{name}.py")) if d is None else d, name)
    code = ("from proxy import compiled; "
            f"compiled.install({package!r}, {str(pkg)!r}, {listed!r}); "
            f"import {package}.{module} as m; print(m.WHO, compiled.STATE.get({package + '.' + module!r}))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    env.pop("EDGEPROXY_PURE", None)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    return res


def test_finder_loads_the_source_instead_of_a_stale_build(tmp_path):
    res = import_with_finder(tmp_path, "edgeproxy_probe_pkg", "mod", ("mod",), "0" * 64)
    assert res.stdout.split() == ["source", "source"]
    assert "built from another version of mod.py" in res.stderr


def test_listed_modules_run_compiled_together_or_not_at_all(tmp_path):
    """Compiled core modules cimport each other's types: a current build of one must not be
    loaded beside the source of another (the stale one) it may depend on."""
    res = import_with_finder(tmp_path, "edgeproxy_probe_pkg3", "current", ("current", "edited"), None,
                             {"edited": "0" * 64})
    assert res.stdout.split() == ["source", "source"]
    assert "edgeproxy_probe_pkg3.edited was built from another version of edited.py" in res.stderr
    assert "whole core" in res.stderr


def test_listed_modules_are_compiled_when_every_build_is_current(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEPROXY_PURE", raising=False)
    for name in ("a", "b"):
        (tmp_path / f"{name}.py").write_text("WHO = 'source'\n")
        fake_build(tmp_path, compiled.source_digest(str(tmp_path / f"{name}.py")), name)
    assert compiled.choose_all(str(tmp_path), ("a", "b")) == ("compiled", "", "")
    (tmp_path / "b.py").write_text("WHO = 'edited'\n")
    assert compiled.choose_all(str(tmp_path), ("a", "b")) == ("source", "b", "stale")


def test_listed_modules_need_the_extensions_they_cimport(tmp_path, monkeypatch):
    """Current builds of every listed module still run as source when an extension module
    they cimport (the native accounting primitives) is missing: they would not import."""
    monkeypatch.delenv("EDGEPROXY_PURE", raising=False)
    for name in ("a", "b"):
        (tmp_path / f"{name}.py").write_text("WHO = 'source'\n")
        fake_build(tmp_path, compiled.source_digest(str(tmp_path / f"{name}.py")), name)
    assert compiled.choose_all(str(tmp_path), ("a", "b"), ("_native",)) == ("source", "_native", "not compiled")
    fake_build(tmp_path, None, "_native")
    assert compiled.choose_all(str(tmp_path), ("a", "b"), ("_native",)) == ("compiled", "", "")


def test_finder_judges_a_leftover_build_of_a_module_no_longer_listed(tmp_path):
    res = import_with_finder(tmp_path, "edgeproxy_probe_pkg2", "old", (), "0" * 64)
    assert res.stdout.split() == ["source", "source"]


def run_version(pure: bool) -> str:
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("EDGEPROXY_PURE", None)
    if pure:
        env["EDGEPROXY_PURE"] = "1"
    res = subprocess.run([sys.executable, "-m", "proxy", "--version"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert "built from another version" not in res.stderr, "the compiled core is stale: rebuild"
    return res.stdout


def test_installed_core_matches_the_build():
    """The build that compiled the codec compiled the core from this very source; PURE runs all Python."""
    expected = "compiled" if codec.NAME == "native" and not compiled.pure_requested() else "source"
    assert f"core: {expected}" in run_version(pure=False)
    assert "codec: pure; core: source" in run_version(pure=True)
