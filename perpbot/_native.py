"""The engine modules compiled with mypyc, and the run-time choice between them and their sources.

This file has no dependencies outside the standard library: ``setup.py`` loads it by path for
:data:`COMPILED_MODULES` and :func:`make_manifest`, and ``python perpbot/_native.py --status``
prints what the last install built. Imported as ``perpbot._native`` (``perpbot/__init__.py``
does so first), it puts a finder at the front of ``sys.meta_path`` that only acts on the names
in :data:`COMPILED_MODULES`:

- with ``PERPBOT_PURE_PYTHON=1`` in the environment, or when the last install built no
  extensions, it loads them from their ``.py`` sources even where a compiled extension sits
  next to them;
- otherwise, when the first of them is imported, it compares the sha256 of each source that
  has a compiled extension next to it with the one the build recorded in the manifest, and
  raises :class:`StaleExtensionError` if one differs (an editable install keeps the ``.so``
  next to the ``.py``, and Python prefers the ``.so``, so an edited source would silently be
  ignored).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec, SourceFileLoader
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType
from typing import Any

# The one list of compiled modules (setup.py, the Makefile and the tests read it from here).
# sandbox.engine.commands stays interpreted: it validates badly typed input with the engine's
# own errors, which compiled code would reject earlier with a TypeError.
COMPILED_MODULES: tuple[str, ...] = (
    "sandbox.engine.accounts",
    "sandbox.engine.book",
    "sandbox.engine.clock",
    "sandbox.engine.codes",
    "sandbox.engine.events",
    "sandbox.engine.exchange",
    "sandbox.engine.funding",
    "sandbox.engine.instruments",
    "sandbox.engine.liquidation",
    "sandbox.engine.mechanics",
    "sandbox.engine.pricing",
    "perpbot.risk.margin",
)

# mypyc puts all compiled modules in one shared library, ``<GROUP_NAME>__mypyc``; naming the
# group inside the perpbot package keeps that library where the package is found (an editable
# install does not put the repository root on sys.path).
GROUP_NAME = "perpbot._native"

PURE_ENV = "PERPBOT_PURE_PYTHON"
MANIFEST_NAME = "_native_build.json"
MANIFEST_FORMAT = 1

# Manifest "status" values.
COMPILED = "compiled"  # the extensions were built from the recorded sources
PURE = "pure"  # PERPBOT_PURE_PYTHON=1 at install time: nothing was compiled
FAILED = "failed"  # compiling was attempted and failed; the install is pure Python

FIX = "run `make build` (re-runs the install, which recompiles) or set PERPBOT_PURE_PYTHON=1"

_TRUE = frozenset({"1", "true", "yes", "on"})


class StaleExtensionError(ImportError):
    """A compiled engine module does not match its source (or its build is unknown)."""


def pure_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``PERPBOT_PURE_PYTHON`` asks for the pure-Python engine (1/true/yes/on)."""
    return environ.get(PURE_ENV, "").strip().lower() in _TRUE


def source_path(module: str, root: Path) -> Path:
    """The ``.py`` file of ``module`` under the directory that holds its top-level package."""
    return root.joinpath(*module.split(".")).with_suffix(".py")


def source_paths(root: Path) -> list[Path]:
    """The sources of :data:`COMPILED_MODULES` under ``root``."""
    return [source_path(m, root) for m in COMPILED_MODULES]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extension_of(source: Path) -> Path | None:
    """The compiled extension that this interpreter would load instead of ``source``, if any."""
    stem = source.with_suffix("")
    for suffix in EXTENSION_SUFFIXES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def manifest_path() -> Path:
    """Where the build records what it compiled: next to this file, inside the package."""
    return Path(__file__).with_name(MANIFEST_NAME)


def make_manifest(status: str, root: Path, detail: str = "") -> dict[str, Any]:
    """The manifest a build writes: its status and, when compiled, each source's sha256."""
    sources = {m: sha256_file(source_path(m, root)) for m in COMPILED_MODULES}
    return {
        "format": MANIFEST_FORMAT,
        "status": status,
        "detail": detail,
        "python": sys.implementation.cache_tag,
        "sources": sources if status == COMPILED else {},
    }


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path``, or None if there is none (or it cannot be read)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_extension(
    module: str, source: Path, extension: Path, manifest: Mapping[str, Any] | None
) -> None:
    """Raise :class:`StaleExtensionError` unless ``extension`` was built from ``source`` as is."""
    if manifest is None or manifest.get("status") != COMPILED:
        raise StaleExtensionError(
            f"{extension} exists but no build manifest ({MANIFEST_NAME}) records compiling "
            f"{module}, so it may not match {source}: {FIX}",
            name=module,
            path=str(extension),
        )
    recorded = manifest.get("sources", {}).get(module)
    if recorded != sha256_file(source):
        raise StaleExtensionError(
            f"{source} changed after {extension.name} was compiled from it, so the compiled "
            f"module is stale: {FIX}",
            name=module,
            path=str(extension),
        )


def check_extensions(root: Path, names: Sequence[str], manifest: Mapping[str, Any] | None) -> None:
    """:func:`check_extension` for each of ``names`` (under ``root``) that has an extension."""
    for module in names:
        source = source_path(module, root)
        extension = extension_of(source)
        if extension is not None and source.is_file():
            check_extension(module, source, extension, manifest)


class EngineFinder:
    """Meta-path finder for :data:`COMPILED_MODULES`: their sources in pure mode; otherwise a
    staleness check of all of them before the first is loaded. Other names it leaves alone.

    The check cannot wait for each module's own import: compiled modules import the others of
    their shared library directly, without the import system.
    """

    def __init__(
        self,
        names: Sequence[str] = COMPILED_MODULES,
        manifest: Path | None = None,
        pure: bool | None = None,
    ) -> None:
        self.names = tuple(names)
        self._manifest_file = manifest_path() if manifest is None else manifest
        self._pure = pure
        self._manifest: dict[str, Any] | None = None
        self._loaded = False
        self._checked = False

    def manifest(self) -> dict[str, Any] | None:
        if not self._loaded:
            self._manifest = read_manifest(self._manifest_file)
            self._loaded = True
        return self._manifest

    def pure(self) -> bool:
        """Load sources: asked for at run time, or the last install compiled nothing."""
        if self._pure is None:
            manifest = self.manifest()
            self._pure = pure_requested() or (
                manifest is not None and manifest.get("status") != COMPILED
            )
        return self._pure

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self.names:
            return None
        tail = fullname.rpartition(".")[2]
        for entry in sys.path if path is None else path:
            source = Path(entry or ".", tail + ".py")
            if source.is_file():
                break
            if extension_of(source) is not None:
                return None  # an extension without its source: nothing to compare against
        else:
            return None
        if self.pure():
            loader = SourceFileLoader(fullname, str(source))
            return spec_from_file_location(fullname, source, loader=loader)
        if not self._checked:
            # The directory that holds the top-level packages (the repository, site-packages).
            check_extensions(source.parents[fullname.count(".")], self.names, self.manifest())
            self._checked = True
        return None  # the normal finders load it (the extension if there is one)


def install() -> None:
    """Put an :class:`EngineFinder` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, EngineFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, EngineFinder())


def compiled_modules() -> dict[str, bool]:
    """Each of :data:`COMPILED_MODULES` (imported if it was not) -> loaded from an extension?"""
    result = {}
    for name in COMPILED_MODULES:
        origin = getattr(importlib.import_module(name), "__file__", None) or ""
        result[name] = origin.endswith(tuple(EXTENSION_SUFFIXES))
    return result


def is_compiled() -> bool:
    """Whether every module of :data:`COMPILED_MODULES` runs compiled."""
    return all(compiled_modules().values())


def describe() -> str:
    """One line on the engine that this process runs, e.g. for a startup banner."""
    loaded = compiled_modules()
    count = sum(loaded.values())
    if count == len(loaded):
        return f"compiled with mypyc ({count} modules)"
    if pure_requested():
        return f"pure Python ({PURE_ENV}=1)"
    if count:
        return f"partly compiled ({count} of {len(loaded)} modules)"
    return f"pure Python ({install_status()})"


def install_status(manifest: Mapping[str, Any] | None = None) -> str:
    """What the last install built, from its manifest."""
    if manifest is None:
        manifest = read_manifest(manifest_path())
    if manifest is None:
        return "no build manifest: not installed with setup.py"
    status = manifest.get("status")
    if status == COMPILED:
        detail = manifest.get("detail")  # how: "profile-guided", or why not
        modules = f"{len(manifest.get('sources', {}))} modules"
        return f"engine compiled with mypyc ({modules}{', ' + detail if detail else ''})"
    if status == PURE:
        return f"engine not compiled: {PURE_ENV}=1 at install time"
    return f"engine not compiled: {manifest.get('detail') or 'the build failed'}"


def _main(argv: Sequence[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    if list(argv) == ["--sources"]:
        print(" ".join(str(p.relative_to(root)) for p in source_paths(root)))
        return 0
    if list(argv) == ["--status"]:
        manifest = read_manifest(manifest_path())
        ok = manifest is not None and manifest.get("status") in (COMPILED, PURE)
        print(("perpbot: " if ok else "WARNING: perpbot: ") + install_status(manifest))
        return 0
    print("usage: python perpbot/_native.py --sources | --status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
elif __name__ == "perpbot._native":  # imported from the package (setup.py runs it by path)
    install()
