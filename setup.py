"""Build hook: compile the engine modules listed in perpbot/_native.py with mypyc.

pyproject.toml holds the project's metadata; this file only adds the compiled extensions.
``PERPBOT_PURE_PYTHON=1`` at install time builds none. If compiling fails (no C compiler, no
Python headers, a mypyc error), the install still succeeds, as pure Python, with a warning.
Every build writes ``perpbot/_native_build.json``: what it compiled and the sha256 of each
compiled source, which perpbot/_native.py checks at import time.
"""

from __future__ import annotations

import copy
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any, ClassVar

from setuptools import Extension, setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
# Loaded by path: importing the perpbot package would need its dependencies.
NATIVE: dict[str, Any] = runpy.run_path(str(ROOT / "perpbot" / "_native.py"))
SHARED_LIB = NATIVE["GROUP_NAME"] + "__mypyc"

# The type check mypyc runs uses [tool.mypy] from pyproject.toml (strict). The compiled modules
# import only the standard library and each other, but their packages' __init__ files import
# the SDK's and the server's dependencies, which the isolated build environment does not have:
# modules reached that way are checked without reporting errors (and untyped where missing).
MYPY_FLAGS = ["--follow-imports=silent"]


def _warn(message: str) -> None:
    print(f"WARNING: perpbot: {message}", file=sys.stderr, flush=True)


def _stale_extensions(base: Path, keep: set[str]) -> list[Path]:
    """Extension modules under ``base``'s packages whose module is not in ``keep``: left by an
    earlier build (the project has no extensions but the engine's), they would shadow sources."""
    suffixes = tuple(NATIVE["EXTENSION_SUFFIXES"])
    found = []
    for package in ("perpbot", "sandbox"):
        for path in (base / package).rglob("*"):
            suffix = next((s for s in suffixes if path.name.endswith(s)), None)
            if suffix is not None:
                module = ".".join(path.relative_to(base).parts)[: -len(suffix)]
                if module not in keep:
                    found.append(path)
    return found


def _mypyc_extensions() -> list[Extension]:
    from mypyc.build import mypycify

    sources = [str(p.relative_to(ROOT)) for p in NATIVE["source_paths"](ROOT)]
    return list(
        mypycify(
            [*MYPY_FLAGS, *sources],
            group_name=NATIVE["GROUP_NAME"],
            target_dir=os.path.join("build", "mypyc"),
            opt_level="3",
        )
    )


class BuildEngine(build_ext):
    """build_ext that compiles the engine with mypyc, or leaves it pure Python (never fails).

    mypyc runs in run(), not in finalize_options: setuptools also finalizes build_ext when it
    only writes metadata. run() then finalizes again, from the options as they were before the
    first finalize_options, so that setuptools sets up the new extensions as its own.
    """

    def finalize_options(self) -> None:
        self.unfinalized = {
            k: copy.copy(v) if isinstance(v, list | dict) else v for k, v in vars(self).items()
        }
        super().finalize_options()

    def run(self) -> None:
        inplace = self.inplace  # (an editable install builds in place; a failed run resets it)
        self.engine_status, self.engine_detail = NATIVE["PURE"], f"{NATIVE['PURE_ENV']}=1"
        self.extensions = []
        if not NATIVE["pure_requested"]():
            self.engine_status, self.engine_detail = NATIVE["COMPILED"], ""
            # Hashed before mypyc reads them: an edit during the build makes the result stale.
            self.compiled_manifest = NATIVE["make_manifest"](NATIVE["COMPILED"], ROOT)
            try:
                extensions = _mypyc_extensions()
            except (Exception, SystemExit) as exc:  # mypyc exits on a type error
                self._failed("mypyc could not translate the engine", exc)
            else:
                try:
                    self.distribution.ext_modules = extensions
                    vars(self).update(self.unfinalized)  # finalized = 0 again
                    self.ensure_finalized()
                    super().run()
                except Exception as exc:
                    self.inplace = inplace
                    self._failed("the C build failed", exc)
        # No extension from an earlier build may shadow a source that this one did not compile.
        keep = set()
        if self.engine_status == NATIVE["COMPILED"]:
            keep = {*NATIVE["COMPILED_MODULES"], SHARED_LIB}
        stale = _stale_extensions(Path(self.build_lib), keep)
        if self.inplace:
            stale += _stale_extensions(ROOT, keep)
        for path in stale:
            path.unlink()
        self._write_manifest()

    def _failed(self, what: str, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()
        last = text[-1] if text else ""
        last = last if len(last) <= 120 else last[:117] + "..."  # a compiler's whole command line
        detail = f"{what}: {type(exc).__name__}" + (f": {last}" if last else "")
        self.engine_status, self.engine_detail = NATIVE["FAILED"], detail
        self.extensions = self.distribution.ext_modules = []
        _warn(f"{detail} (pip install -v shows more). Installing the pure-Python engine instead.")

    def _write_manifest(self) -> None:
        if self.engine_status == NATIVE["COMPILED"]:
            manifest = self.compiled_manifest
        else:
            manifest = NATIVE["make_manifest"](self.engine_status, ROOT, self.engine_detail)
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        targets = [Path(self.build_lib, "perpbot", NATIVE["MANIFEST_NAME"])]
        if self.inplace:
            targets.append(ROOT / "perpbot" / NATIVE["MANIFEST_NAME"])
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


class Build(build):
    """build that always runs build_ext: a pure build still writes its manifest."""

    sub_commands: ClassVar[list[tuple[str, Any]]] = [
        (name, (lambda _: True) if name == "build_ext" else predicate)
        for name, predicate in build.sub_commands
    ]


# A placeholder that marks the distribution as having extensions (a platform-specific wheel);
# BuildEngine.run replaces it with mypyc's extensions, or with none.
PLACEHOLDER = [] if NATIVE["pure_requested"]() else [Extension(SHARED_LIB, sources=[])]

setup(ext_modules=PLACEHOLDER, cmdclass={"build": Build, "build_ext": BuildEngine})
