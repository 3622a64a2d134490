"""Build hook: compile the engine modules listed in perpbot/_native.py with mypyc.

pyproject.toml holds the project's metadata; this file only adds the compiled extensions.
``PERPBOT_PURE_PYTHON=1`` at install time builds none. If compiling fails (no C compiler, no
Python headers, a mypyc error), the install still succeeds, as pure Python, with a warning.
Every build writes ``perpbot/_native_build.json``: what it compiled and the sha256 of each
compiled source, which perpbot/_native.py checks at import time.

With gcc the build is profile-guided: the engine is compiled once with ``-fprofile-generate``,
build_tools/pgo_training.py runs against that build, and the engine is compiled again with the
profile it wrote (``-fprofile-use``): hot code laid out together, about a third fewer
instruction-cache misses (README, "The compiled engine"). ``PERPBOT_PGO=0`` skips that pass;
if the instrumented build or the training fails, the build goes on without a profile.
"""

from __future__ import annotations

import copy
import json
import os
import runpy
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
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

PGO_ENV = "PERPBOT_PGO"
PGO_TRAINING = ROOT / "build_tools" / "pgo_training.py"
PGO_TRAINING_COMMANDS = "150000"
PGO_TIMEOUT_S = 600


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


def _pgo_requested() -> bool:
    return os.environ.get(PGO_ENV, "1").strip() != "0"


def _compiler_is_gcc() -> bool:
    """Whether the C compiler the build uses (``$CC``, else Python's) is gcc: the profile
    flags are gcc's (clang's differ)."""
    command = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    try:
        out = subprocess.run(
            [command[0], "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError, IndexError):
        return False
    return "Free Software Foundation" in out and "clang" not in out


@contextmanager
def _extra_args(
    extensions: list[Extension], compile_args: list[str], link_args: list[str]
) -> Iterator[None]:
    """Add compiler and linker arguments to every extension for the duration of one pass."""
    saved = [(list(ext.extra_compile_args), list(ext.extra_link_args)) for ext in extensions]
    for ext in extensions:
        ext.extra_compile_args += compile_args
        ext.extra_link_args += link_args
    try:
        yield
    finally:
        for ext, (compile_saved, link_saved) in zip(extensions, saved, strict=True):
            ext.extra_compile_args[:] = compile_saved
            ext.extra_link_args[:] = link_saved


def _training_root(lib: Path) -> None:
    """Make ``lib`` (an instrumented build: the extension modules only) importable as the
    engine without the SDK's and the server's dependencies: the engine's Python sources
    (``sandbox.engine`` has modules that are not compiled) under empty package stubs."""
    for package in ("perpbot", "perpbot/risk", "sandbox"):
        (lib / package).mkdir(parents=True, exist_ok=True)
        (lib / package / "__init__.py").write_text("", encoding="utf-8")
    engine = lib / "sandbox" / "engine"
    engine.mkdir(parents=True, exist_ok=True)
    for source in (ROOT / "sandbox" / "engine").glob("*.py"):
        shutil.copy2(source, engine / source.name)


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
                    self.force = True  # both passes compile every source
                    self.compiler_option = self.compiler  # run() replaces it with an object
                    self.pgo_skipped = f"{PGO_ENV}=0"
                    profile = self._profile(extensions) if _pgo_requested() else None
                    if profile is not None and self._build_with_profile(extensions, profile):
                        self.compiled_manifest["detail"] = "profile-guided"
                    else:
                        self._compile()
                        self.compiled_manifest["detail"] = f"no profile: {self.pgo_skipped}"
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

    def _compile(self) -> None:
        """One pass of build_ext over the extensions (this class runs it up to three times)."""
        self.compiler = self.compiler_option
        super().run()

    def _profile(self, extensions: list[Extension]) -> str | None:
        """Compile ``extensions`` instrumented into a scratch directory and run the training
        workload on them; return the directory of the profile it wrote, None on any failure
        (with a warning). The object files are written where the final pass writes them:
        gcc finds an object's profile by its path."""
        if not _compiler_is_gcc():
            self.pgo_skipped = "the C compiler is not gcc"
            return None
        profile = os.path.abspath(os.path.join(self.build_temp, "pgo-profile"))
        shutil.rmtree(profile, ignore_errors=True)
        build_lib, inplace = self.build_lib, self.inplace
        # (under the build directory, not /tmp, which may not allow loading a library)
        scratch = Path(os.path.abspath(os.path.join(self.build_temp, "pgo-lib")))
        shutil.rmtree(scratch, ignore_errors=True)
        instrument = [
            f"-fprofile-generate={profile}",
            "-fprofile-update=single",  # the training is single-threaded
        ]
        try:
            self.build_lib, self.inplace = str(scratch), False
            with _extra_args(extensions, instrument, [f"-fprofile-generate={profile}"]):
                self._compile()
            _training_root(scratch)
            env = {k: v for k, v in os.environ.items() if k != NATIVE["PURE_ENV"]}
            # The scratch build first; then this process's path: in pip's isolated build
            # environment that is where the build requirements (mypy_extensions, which the
            # compiled modules import) are, as the project's own dependencies are not yet.
            env["PYTHONPATH"] = os.pathsep.join([str(scratch), *(p for p in sys.path if p)])
            done = subprocess.run(
                [sys.executable, str(PGO_TRAINING), PGO_TRAINING_COMMANDS],
                env=env,
                cwd=scratch,
                capture_output=True,
                text=True,
                timeout=PGO_TIMEOUT_S,
            )
            if done.returncode != 0:
                raise RuntimeError(f"the training run failed: {done.stdout}{done.stderr}")
            if not any(Path(profile).rglob("*.gcda")):
                raise RuntimeError("the training run wrote no profile")
            return profile
        except Exception as exc:  # any failure: build without a profile
            text = str(exc).strip().splitlines()
            self.pgo_skipped = f"{type(exc).__name__}: {text[-1] if text else ''}"[:120]
            _warn(f"no profile-guided pass ({self.pgo_skipped})")
            return None
        finally:
            self.build_lib, self.inplace = build_lib, inplace
            shutil.rmtree(scratch, ignore_errors=True)

    def _build_with_profile(self, extensions: list[Extension], profile: str) -> bool:
        """The final pass with ``-fprofile-use``; False (with a warning) if it failed."""
        use = [
            f"-fprofile-use={profile}",
            "-fprofile-partial-training",  # code the training never ran stays -O3
            "-Wno-missing-profile",  # the module shims never run
        ]
        try:
            with _extra_args(extensions, use, []):
                self._compile()
            return True
        except Exception as exc:
            self.pgo_skipped = f"the profile-guided pass failed ({type(exc).__name__})"
            _warn(f"{self.pgo_skipped}; building without it")
            return False

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
