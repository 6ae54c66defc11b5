"""Tasks: ``nox -s gallery`` builds the site, ``nox -s tests`` runs the tests.

Each session installs the pinned stack from ``pyproject.toml``'s extras into
its own virtual environment (reused between runs). torch's CPU build is
installed first so that pip never pulls a multi-GB CUDA build.
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
TORCH = "torch==2.13.0"


def _install(session: nox.Session, *extras: str) -> None:
    session.install(TORCH)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


def _quiet_env(session: nox.Session) -> None:
    session.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    session.env.setdefault("MPLBACKEND", "Agg")
    session.env.setdefault("PYTHONHASHSEED", "0")


@nox.session
def gallery(session: nox.Session) -> None:
    """Build the documentation site, executing every example, into build/html."""
    _install(session, "docs")
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
    """Unit tests, then the downloadable notebooks re-run and compared by nbval."""
    _install(session, "test", "docs")
    _quiet_env(session)
    session.run("pytest", "tests", *session.posargs)
    # 1. The notebooks the site offers: every cell must run, assertions included.
    notebooks = ROOT / "build" / "notebooks"
    shutil.rmtree(notebooks, ignore_errors=True)
    session.run("python", "tools/notebooks.py", "build", str(notebooks))
    session.run(
        "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
        "--rootdir", str(notebooks), str(notebooks),
    )
    # 2. Executed golden copies: deterministic outputs must not change.
    session.run("python", "tools/notebooks.py", "check")
    with tempfile.TemporaryDirectory() as tmp:
        session.run(
            "pytest", "--nbval", "--nbval-current-env",
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
    session.install("ruff==0.17.6")
    session.run("ruff", "check", "src", "examples", "tests", "tools", "conf.py", "noxfile.py")
