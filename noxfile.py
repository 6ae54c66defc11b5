"""Tasks: ``nox -s gallery`` builds the site, ``nox -s tests`` runs the tests.

Every session installs from the committed lock, ``requirements/lock.txt`` (every
transitive package at an exact version, compiled from ``pyproject.toml`` by
``nox -s lock``), so CI, a developer and a reader get the same versions on any day.
The lock is used as a *constraints* file: each session installs only the extras it
needs, each at its locked version, and pip has nothing left to resolve.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
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
#: The installer of the shared environment: uv installs (and byte-compiles) the locked
#: stack in about 30 s where pip takes 70-80 s (measured on a fresh venv, 2 cores).
#: Fetched once, pinned, into ``.nox/uv`` (not into the environment it fills); where it
#: cannot be had, pip installs the same locked versions, only slower.
UV = "uv==0.13.8"
UV_HOME = ROOT / ".nox" / "uv"


#: ``gallery``, ``tests`` and ``regenerate`` share one environment: the same locked
#: packages (tests add the test extra), which CI used to install twice (about two minutes).
#: Run those sessions one at a time. ``lint`` and ``lock`` keep their own small venvs.
SITE_ENV = ROOT / ".nox" / "site"


def _site_env(session: nox.Session) -> Path:
    """Create (once) the shared environment and put its ``bin`` first on the session's PATH."""
    if not (SITE_ENV / "bin" / "python").exists():
        session.run(sys.executable, "-m", "virtualenv", "--quiet", str(SITE_ENV), external=True)
    session.env["VIRTUAL_ENV"] = str(SITE_ENV)
    session.env["PATH"] = os.pathsep.join([str(SITE_ENV / "bin"), os.environ.get("PATH", "")])
    return SITE_ENV / "bin"


def _bin(name: str) -> str:
    """A program of the shared environment (sessions without a venv find nothing by name)."""
    return str(SITE_ENV / "bin" / name)


@contextmanager
def _timed(session: nox.Session, what: str):
    """Log how long ``what`` took (CI's log keeps each phase's time)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        session.log(f"time: {what} {time.perf_counter() - t0:.0f} s")


def _run(session: nox.Session, program: str, *args: str, **kwargs) -> None:
    """Run ``program`` from the shared environment."""
    session.run(_bin(program), *args, external=True, **kwargs)


def _uv(session: nox.Session) -> str | None:
    """The pinned uv program (fetched into ``.nox/uv`` the first time), or None."""
    program = UV_HOME / "bin" / "uv"
    if not program.exists():
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(UV_HOME), UV], capture_output=True, text=True)
        if fetched.returncode != 0 or not program.exists():
            session.warn(f"{UV} could not be installed; pip installs instead (slower): "
                         + (fetched.stderr.strip().splitlines() or ["no uv program"])[-1])
            return None
    return str(program)


def _pip_sources() -> tuple[list[str], dict[str, str]]:
    """pip's configured package sources as uv options (uv reads no pip.conf).

    ``pip config list`` gives what pip would use (files and ``PIP_*`` variables): index
    URLs, find-links folders, constraint files and the CA bundle. A ``file://`` index or
    folder that does not exist is skipped, as pip skips it.
    """
    listed = subprocess.run([_bin("python"), "-m", "pip", "config", "list"],
                            capture_output=True, text=True).stdout
    options: dict[str, list[str]] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        for item in shlex.split(value.strip().strip("'\"")):
            options.setdefault(option, [])
            if item not in options[option]:
                options[option].append(item)

    def present(location: str) -> bool:
        if location.startswith("file://"):
            return Path(location[len("file://"):]).exists()
        return "://" in location or Path(location).exists()

    # pip takes the best match over all its indexes; uv's default stops at the first
    # index that has the package, which is not what pip would install.
    flags: list[str] = ["--index-strategy", "unsafe-best-match"]
    for option, flag in (("index-url", "--index-url"), ("extra-index-url", "--extra-index-url"),
                         ("find-links", "--find-links"), ("constraint", "--constraint")):
        for location in options.get(option, []):
            if present(location):
                flags += [flag, location]
    env = {}
    for cert in options.get("cert", []):
        if Path(cert).exists():
            env["SSL_CERT_FILE"] = cert
    return flags, env


def _constrained(session: nox.Session, *args: str) -> None:
    """Install under the lock: anything the lock does not pin is an error later.

    With uv when it is available (see :data:`UV`), else (or if uv fails) with pip.
    """
    from nox.command import CommandFailed

    uv = _uv(session)
    if uv is not None:
        flags, env = _pip_sources()
        try:
            # Compiled as pip compiles: with PYTHONDONTWRITEBYTECODE set (as on CI's
            # machines) every process would otherwise compile the stack again on import
            # (measured: importing torch + TensorFlow + Akida 24 s instead of 9 s).
            session.run(uv, "pip", "install", "--quiet", "--compile-bytecode", "--python",
                        _bin("python"), *flags, "-c", str(LOCK), *args, external=True,
                        env=env)
            return
        except CommandFailed:
            session.warn("uv failed (above); installing the same locked versions with pip")
    session.run(_bin("python"), "-m", "pip", "install", "--quiet", "-c", str(LOCK), *args,
                external=True)


def _install(session: nox.Session, *extras: str, wheel: bool = False) -> None:
    """The project with ``extras`` in the shared environment, every dependency locked.

    ``wheel=True`` installs the wheel built by :func:`_build_wheel` instead of an
    editable checkout: exactly what a reader installs from the site.
    """
    _site_env(session)
    # The build backend comes from the lock too (no isolated, unpinned build env).
    _constrained(session, "setuptools", "wheel")
    suffix = f"[{','.join(extras)}]" if extras else ""
    session.run(_bin("python"), "-m", "pip", "uninstall", "--yes", "--quiet",
                "akida-workflows", silent=True, external=True)
    if wheel:
        built = _build_wheel(session)
        _constrained(session, "--no-build-isolation", f"{built}{suffix}")
    else:
        _constrained(session, "--no-build-isolation", "-e", f".{suffix}")
    # Nothing outside the lock slipped in (a package pyproject gained but the lock lacks).
    session.run(_bin("python"), "tools/check_lock.py", "--installed", silent=True,
                external=True)


def _build_wheel(session: nox.Session) -> Path:
    """Build ``build/dist/akida_workflows-<version>-py3-none-any.whl`` (the site offers it)."""
    shutil.rmtree(DIST, ignore_errors=True)
    session.run(_bin("python"), "-m", "pip", "wheel", "--quiet", "--no-deps",
                "--no-build-isolation", "--wheel-dir", str(DIST), ".", silent=True,
                external=True)
    wheels = sorted(DIST.glob("akida_workflows-*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one wheel in {DIST}, found {wheels}")
    return wheels[0]


#: One thread per process, and one instruction-set path per library, so that training
#: gives the same weights bit for bit run after run (measured:
#: ATen's vector kernels, oneDNN (torch convolutions; TensorFlow's matmuls, even with
#: TF_ENABLE_ONEDNN_OPTS=0) and OpenBLAS (numpy) each change the trained weights between
#: their AVX2 and AVX-512 paths; the thread count changes reduction orders). The
#: examples' golden notebooks are made and compared under this environment. It makes a
#: machine reproduce its own runs; it does not make different CPU models agree (their
#: libraries block the matrix kernels by cache size): tests/notebooks/sanitize.cfg masks
#: the trained figures, and only those.
REPRODUCIBLE_ENV = {
    "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
}
X86_ISA_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}


def reproducible_env() -> dict[str, str]:
    """The environment every session runs in (see :data:`REPRODUCIBLE_ENV`)."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", **REPRODUCIBLE_ENV,
           # TensorFlow's own `tf.keras` is then tf-keras (what QuantizeML and CNN2SNN use),
           # so importing TensorFlow no longer imports Keras 3 and scikit-learn, which
           # nothing here uses: 1.5-2 s less in every process that imports the stack.
           "TF_USE_LEGACY_KERAS": "1"}
    if platform.machine().lower() in {"x86_64", "amd64"}:
        env.update(X86_ISA_ENV)
    return env


def _quiet_env(session: nox.Session) -> None:
    session.env.update(reproducible_env())


@nox.session(venv_backend="none")
def gallery(session: nox.Session) -> None:
    """Build the documentation site, executing every example, into build/html."""
    with _timed(session, "install"):
        _install(session, "docs")
    _quiet_env(session)
    # Every data set the examples load is here (or downloadable), or stop now, with the fix.
    _run(session, "python", "tools/check_data.py", "examples")
    _build_wheel(session)  # offered for download by the site, beside the lock
    for stale in ("docs/auto_examples", "docs/generated", "docs/gen_modules"):
        shutil.rmtree(ROOT / stale, ignore_errors=True)
    with _timed(session, "sphinx-build (every example executed)"):
        _run(session, "sphinx-build", "-c", ".", "-b", "html", "-T", "-W", "--keep-going",
             "docs", "build/html", *session.posargs)
    _run(session, "python", "tools/check_site.py", "build/html",
         "--junit", "build/gallery-junit.xml")
    session.log(f"site: {ROOT / 'build/html/index.html'}")


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Unit tests and the site's notebooks (re-run and compared by nbval), on every core.

    The package is installed from its wheel with the lock, as a reader who
    downloads a notebook installs it (not from the editable checkout).
    """
    with _timed(session, "install"):
        _install(session, "test", "docs", wheel=True)
    _quiet_env(session)
    _run(session, "python", "tools/check_lock.py")  # pyproject.toml and the lock agree
    # The notebooks the site offers: built as sphinx-gallery builds them, they must have
    # the same code as the executed golden copies in tests/notebooks/ ...
    notebooks = ROOT / "build" / "notebooks"
    shutil.rmtree(notebooks, ignore_errors=True)
    _run(session, "python", "tools/notebooks.py", "build", str(notebooks))
    _run(session, "python", "tools/notebooks.py", "check")
    with tempfile.TemporaryDirectory() as tmp:
        # Offline with an empty data folder, as the golden copies were made (the unit
        # tests make their own data); the notebooks' data is checked before anything runs.
        env = {"AKIDA_WORKFLOWS_OFFLINE": "1", "AKIDA_WORKFLOWS_DATA": os.path.join(tmp, "none")}
        _run(session, "python", "tools/check_data.py", "examples", env=env)
        # ... and one pytest run on every core: the unit tests and the golden notebooks,
        # which nbval re-executes (every cell, assertions included) and compares. One
        # file per worker (module fixtures stay shared); the longest files are handed
        # out first (benchmarks/durations.json), and the short ones fill the cores.
        with _timed(session, "pytest: unit tests + nbval"):
            # build/junit.xml: each file's seconds for `python tools/durations.py record`
            _run(session, "pytest", "-n", "auto", "--dist", "loadfile", "--durations=30",
                 "--junitxml", str(ROOT / "build" / "junit.xml"),
                 "--nbval", "--nbval-current-env",
                 "--nbval-sanitize-with", "tests/notebooks/sanitize.cfg",
                 "-p", "no:cacheprovider", "tests", *session.posargs, env=env)


@nox.session(default=False, venv_backend="none")
def regenerate(session: nox.Session) -> None:
    """Re-execute the examples' notebooks and store them as golden copies (opt-in)."""
    _install(session, "test", "docs")
    _quiet_env(session)
    _run(session, "python", "tools/notebooks.py", "regenerate", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the library, examples, tests and tools."""
    session.install("-c", str(LOCK), "ruff")
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
