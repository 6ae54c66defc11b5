"""Tasks: ``nox -s gallery`` builds the site, ``nox -s tests`` runs the tests.

Every session installs from the committed lock, ``requirements/lock.txt`` (every
transitive package at an exact version, compiled from ``pyproject.toml`` by
``nox -s lock``), so CI, a developer and a reader get the same versions on any day.
The lock is used as a *constraints* file: each session installs only the extras it
needs, each at its locked version, and pip has nothing left to resolve.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests", "gallery"]

ROOT = Path(__file__).resolve().parent
LOCK = ROOT / "requirements" / "lock.txt"
DIST = ROOT / "build" / "dist"
#: The extras the lock covers (``nox -s lock`` compiles all of them together).
LOCKED_EXTRAS = ("cpu", "docs", "test", "lint")
PIP_TOOLS = "pip-tools==7.6.2"


def _constrained(session: nox.Session, *args: str) -> None:
    """``pip install`` under the lock: anything the lock does not pin is an error later."""
    session.install("-c", str(LOCK), *args)


def _install(session: nox.Session, *extras: str, wheel: bool = False) -> None:
    """The project with ``extras``, every dependency at its locked version.

    ``wheel=True`` installs the wheel built by :func:`_build_wheel` instead of an
    editable checkout: exactly what a reader installs from the site.
    """
    # The build backend comes from the lock too (no isolated, unpinned build env).
    _constrained(session, "setuptools", "wheel")
    suffix = f"[{','.join(extras)}]" if extras else ""
    if wheel:
        built = _build_wheel(session)
        session.run_install("pip", "uninstall", "--yes", "--quiet", "akida-workflows",
                            silent=True)
        _constrained(session, "--no-build-isolation", f"{built}{suffix}")
    else:
        _constrained(session, "--no-build-isolation", "-e", f".{suffix}")
    # Nothing outside the lock slipped in (a package pyproject gained but the lock lacks).
    session.run_install("python", "tools/check_lock.py", "--installed", silent=True)


def _build_wheel(session: nox.Session) -> Path:
    """Build ``build/dist/akida_workflows-<version>-py3-none-any.whl`` (the site offers it)."""
    shutil.rmtree(DIST, ignore_errors=True)
    session.run_install("pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", str(DIST), ".", silent=True)
    wheels = sorted(DIST.glob("akida_workflows-*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one wheel in {DIST}, found {wheels}")
    return wheels[0]


def _quiet_env(session: nox.Session) -> None:
    session.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    session.env.setdefault("MPLBACKEND", "Agg")
    session.env.setdefault("PYTHONHASHSEED", "0")


@nox.session
def gallery(session: nox.Session) -> None:
    """Build the documentation site, executing every example, into build/html."""
    _install(session, "docs")
    _build_wheel(session)  # offered for download by the site, beside the lock
    _quiet_env(session)
    for stale in ("docs/auto_examples", "docs/generated", "docs/gen_modules"):
        shutil.rmtree(ROOT / stale, ignore_errors=True)
    session.run(
        "sphinx-build", "-c", ".", "-b", "html", "-T", "-W", "--keep-going",
        "docs", "build/html", *session.posargs,
    )
    session.run("python", "tools/check_site.py", "build/html", "--junit", "build/gallery-junit.xml")
    session.log(f"site: {ROOT / 'build/html/index.html'}")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests, then the site's notebooks re-run and compared by nbval.

    The package is installed from its wheel with the lock, as a reader who
    downloads a notebook installs it (not from the editable checkout).
    """
    _install(session, "test", "docs", wheel=True)
    _quiet_env(session)
    session.run("python", "tools/check_lock.py")  # pyproject.toml and the lock agree
    # One test file per worker, on every core (module-scoped fixtures stay shared).
    parallel = ("-n", "auto", "--dist", "loadfile")
    session.run("pytest", *parallel, "tests", *session.posargs)
    # The notebooks the site offers: built as sphinx-gallery builds them, they must have
    # the same code as the executed golden copies in tests/notebooks/ ...
    notebooks = ROOT / "build" / "notebooks"
    shutil.rmtree(notebooks, ignore_errors=True)
    session.run("python", "tools/notebooks.py", "build", str(notebooks))
    session.run("python", "tools/notebooks.py", "check")
    # ... which nbval re-executes (every cell, assertions included) and compares.
    with tempfile.TemporaryDirectory() as tmp:
        session.run(
            "pytest", *parallel, "--nbval", "--nbval-current-env",
            "--nbval-sanitize-with", "tests/notebooks/sanitize.cfg",
            "-p", "no:cacheprovider", "tests/notebooks",
            env={
                "AKIDA_WORKFLOWS_OFFLINE": "1",
                "AKIDA_WORKFLOWS_DATA": os.path.join(tmp, "no-data"),
            },
        )


@nox.session(default=False)
def regenerate(session: nox.Session) -> None:
    """Re-execute the examples' notebooks and store them as golden copies (opt-in)."""
    _install(session, "test", "docs")
    _quiet_env(session)
    session.run("python", "tools/notebooks.py", "regenerate", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the library, examples, tests and tools."""
    _constrained(session, "ruff")
    session.run("ruff", "check", "src", "examples", "tests", "tools", "benchmarks", "conf.py",
                "noxfile.py")


@nox.session(default=False)
def lock(session: nox.Session) -> None:
    """Compile requirements/lock.txt from pyproject.toml (``-- --upgrade`` to refresh all).

    pip-compile keeps the current pins that still satisfy pyproject.toml and resolves
    only what changed; ``nox -s lock -- --upgrade`` re-resolves everything to the newest
    releases the ranges allow (then run the gallery and the tests before committing).
    """
    session.install(PIP_TOOLS)
    extras = [f"--extra={extra}" for extra in LOCKED_EXTRAS]
    # The header names the command and the extras (tools/check_lock.py reads them).
    session.env["CUSTOM_COMPILE_COMMAND"] = f"nox -s lock  (pip-compile {' '.join(extras)})"
    session.run(
        "pip-compile", "--quiet", "--allow-unsafe", "--strip-extras", *extras,
        "--no-emit-index-url", "--no-emit-find-links", "--no-emit-trusted-host",
        "--output-file", str(LOCK.relative_to(ROOT)), "pyproject.toml",
        *session.posargs,
    )
    session.run("python", "tools/check_lock.py")
