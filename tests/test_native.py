"""The mypyc-compiled engine: the module list, the pure-Python switch and the staleness guard.

The compiled run is what this install built: the test fails when the last install tried to
compile and failed (CI has a C compiler), and is skipped when it was pure on purpose
(``PERPBOT_PURE_PYTHON=1`` at install time).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perpbot import _native

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import json, sandbox.engine.exchange as e, perpbot._native as n; "
    "print(json.dumps([e.__file__, n.is_compiled(), n.compiled_modules()]))"
)


def _probe(**env: str) -> tuple[str, bool, dict[str, bool]]:
    environ = {k: v for k, v in os.environ.items() if k != _native.PURE_ENV} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    file, compiled, modules = json.loads(out)
    return file, compiled, modules


def test_the_list_names_real_engine_modules() -> None:
    assert len(set(_native.COMPILED_MODULES)) == len(_native.COMPILED_MODULES) == 12
    for name in _native.COMPILED_MODULES:
        assert _native.source_path(name, ROOT).is_file(), name
        assert importlib.util.find_spec(name) is not None, name
    # commands stays interpreted (its typed rejections), and no package __init__ is compiled.
    assert "sandbox.engine.commands" not in _native.COMPILED_MODULES
    assert not any(name.endswith("__init__") for name in _native.COMPILED_MODULES)


def test_pure_python_mode_loads_every_module_from_its_source() -> None:
    file, compiled, modules = _probe(PERPBOT_PURE_PYTHON="1")
    assert file.endswith("exchange.py")
    assert compiled is False
    assert not any(modules.values()), modules


def test_the_installed_engine_is_compiled() -> None:
    manifest = _native.read_manifest(_native.manifest_path())
    if manifest is not None and manifest["status"] == _native.PURE:
        pytest.skip("installed with PERPBOT_PURE_PYTHON=1: nothing was compiled")
    assert manifest is not None, "no build manifest: run `make build`"
    assert manifest["status"] == _native.COMPILED, _native.install_status(manifest)
    file, compiled, modules = _probe()
    assert compiled, modules
    assert file.endswith(tuple(_native.EXTENSION_SUFFIXES))


# What a compiled build's manifest says when it made no profile-guided pass on purpose.
DELIBERATELY_UNGUIDED = ("no profile: PERPBOT_PGO=0", "no profile: the C compiler is not gcc")


def test_the_compiled_engine_is_profile_guided() -> None:
    """setup.py compiles twice with gcc, the second time with the training run's profile; a
    failure there falls back to a plain build with a warning, which this test turns into a
    failure (CI builds with gcc)."""
    manifest = _native.read_manifest(_native.manifest_path())
    if manifest is None or manifest["status"] != _native.COMPILED:
        pytest.skip("the engine is not compiled")
    if manifest.get("detail") in DELIBERATELY_UNGUIDED:
        pytest.skip(manifest["detail"])
    assert manifest.get("detail") == "profile-guided", _native.install_status(manifest)
    assert "profile-guided" in _native.install_status(manifest)


def _fake_build(tmp_path: Path, source_text: str = "X = 1\n") -> tuple[Path, Path, Path]:
    """``pkg/mod.py`` with an (unloadable) extension next to it, and the manifest of a build."""
    source = tmp_path / "pkg" / "mod.py"
    source.parent.mkdir()
    source.write_text(source_text)
    extension = source.with_name("mod" + _native.EXTENSION_SUFFIXES[0])
    extension.write_bytes(b"not an extension")
    manifest = tmp_path / _native.MANIFEST_NAME
    sources = {"pkg.mod": hashlib.sha256(source.read_bytes()).hexdigest()}
    manifest.write_text(json.dumps({"status": _native.COMPILED, "sources": sources}))
    return source, extension, manifest


def test_the_staleness_check_passes_an_unchanged_source(tmp_path: Path) -> None:
    source, extension, manifest = _fake_build(tmp_path)
    _native.check_extension("pkg.mod", source, extension, _native.read_manifest(manifest))
    _native.check_extensions(tmp_path, ["pkg.mod", "pkg.absent"], _native.read_manifest(manifest))


def test_an_edited_source_makes_the_extension_stale(tmp_path: Path) -> None:
    source, _, manifest = _fake_build(tmp_path)
    source.write_text("X = 2\n")
    with pytest.raises(_native.StaleExtensionError) as info:
        _native.check_extensions(tmp_path, ["pkg.mod"], _native.read_manifest(manifest))
    message = str(info.value)
    assert str(source) in message and "make build" in message and _native.PURE_ENV in message
    assert isinstance(info.value, ImportError)


@pytest.mark.parametrize("status", [None, _native.FAILED, _native.PURE])
def test_an_extension_that_no_manifest_records_is_stale(tmp_path: Path, status: str | None) -> None:
    source, extension, _ = _fake_build(tmp_path)
    manifest = None if status is None else {"status": status, "sources": {}}
    with pytest.raises(_native.StaleExtensionError, match="no build manifest"):
        _native.check_extension("pkg.mod", source, extension, manifest)


def test_the_finder_checks_before_the_import_and_serves_sources_in_pure_mode(
    tmp_path: Path,
) -> None:
    source, _, manifest = _fake_build(tmp_path)
    path = [str(source.parent)]
    fresh = _native.EngineFinder(["pkg.mod"], manifest=manifest, pure=False)
    assert fresh.find_spec("pkg.mod", path) is None  # up to date: the normal finders load it
    assert fresh.find_spec("pkg.other", path) is None

    source.write_text("X = 2\n")
    stale = _native.EngineFinder(["pkg.mod"], manifest=manifest, pure=False)
    with pytest.raises(_native.StaleExtensionError):
        stale.find_spec("pkg.mod", path)

    pure = _native.EngineFinder(["pkg.mod"], manifest=manifest, pure=True)
    spec = pure.find_spec("pkg.mod", path)
    assert spec is not None and spec.origin == str(source)

    # A build that compiled nothing means sources, even with an extension left next to them.
    manifest.write_text(json.dumps({"status": _native.FAILED, "sources": {}}))
    spec = _native.EngineFinder(["pkg.mod"], manifest=manifest).find_spec("pkg.mod", path)
    assert spec is not None and spec.origin == str(source)


def test_pure_requested_reads_the_usual_true_values() -> None:
    assert _native.pure_requested({"PERPBOT_PURE_PYTHON": "1"})
    assert _native.pure_requested({"PERPBOT_PURE_PYTHON": " True "})
    assert not _native.pure_requested({"PERPBOT_PURE_PYTHON": "0"})
    assert not _native.pure_requested({})


def test_the_finder_is_installed_before_any_engine_module() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sandbox; "
            "print(sum(isinstance(f, sys.modules['perpbot._native'].EngineFinder) "
            "for f in sys.meta_path), [m for m in sys.modules if m.startswith('sandbox.engine')])",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert out.split() == ["1", "[]"]
