"""Check that ``requirements/lock.txt`` and ``pyproject.toml`` agree (and the environment).

Fails (exit 1, one line per problem) when

- a requirement of ``pyproject.toml`` (dependencies, every optional extra, the build
  backend) has no pin in the lock, or its pin is outside the range pyproject allows;
- the lock pins as a direct dependency of the project something pyproject no longer
  asks for (it was removed from pyproject without re-locking);
- an extra of pyproject was not compiled into the lock;
- with ``--installed``: a distribution installed in the running environment is absent
  from the lock or at another version (the session did not install from the lock).

The fix is always ``nox -s lock`` (then commit ``requirements/lock.txt``).

Usage: ``python tools/check_lock.py [--installed] [--lock FILE] [--pyproject FILE]``
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "akida-workflows"
#: Installed distributions that are the environment's own tooling, not the project's.
TOOLING = frozenset({"pip", "akida-workflows"})

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_EXTRA = re.compile(r"--extra[= ]([A-Za-z0-9_-]+)")


def read_lock(path: Path) -> tuple[dict[str, Version], set[str], set[str]]:
    """(pins, direct dependencies of the project, extras named in the header)."""
    pins: dict[str, Version] = {}
    direct: set[str] = set()
    extras: set[str] = set()
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        match = _PIN.match(stripped)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = Version(match.group(2))
            continue
        if stripped.startswith("#"):
            extras.update(_EXTRA.findall(stripped))
            via = stripped.lstrip("#").strip()
            via = via[len("via "):] if via.startswith("via ") else via
            if current and via.startswith(f"{PROJECT} (pyproject.toml)"):
                direct.add(current)
        elif stripped and not stripped.startswith("-"):
            raise ValueError(f"{path}: unexpected line {line!r} (not name==version)")
    return pins, direct, extras


def read_pyproject(path: Path) -> tuple[list[Requirement], set[str]]:
    """Every requirement the project states (runtime, extras, build), and the extras."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    project = data["project"]
    optional = project.get("optional-dependencies", {})
    requirements = [Requirement(r) for r in project.get("dependencies", [])]
    for extra_requirements in optional.values():
        requirements += [Requirement(r) for r in extra_requirements]
    requirements += [Requirement(r) for r in data.get("build-system", {}).get("requires", [])]
    return requirements, set(optional)


def problems(lock: Path, pyproject: Path, installed: bool = False) -> list[str]:
    pins, direct, locked_extras = read_lock(lock)
    requirements, extras = read_pyproject(pyproject)
    out = []
    for extra in sorted(extras - locked_extras):
        out.append(f"extra [{extra}] of pyproject.toml is not compiled into {lock.name}")
    env = default_environment()
    wanted = set()
    for req in requirements:
        if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
            continue
        name = canonicalize_name(req.name)
        wanted.add(name)
        if name not in pins:
            out.append(f"{req} (pyproject.toml) has no pin in {lock.name}")
        elif req.specifier and not req.specifier.contains(pins[name], prereleases=True):
            out.append(f"{lock.name} pins {name}=={pins[name]}, outside pyproject's {req}")
    for name in sorted(direct - wanted):
        out.append(f"{lock.name} pins {name} for the project, but pyproject.toml no longer "
                   "asks for it")
    if installed:
        for dist in metadata.distributions():
            name = canonicalize_name(dist.metadata["Name"] or "")
            if not name or name in TOOLING:
                continue
            if name not in pins:
                out.append(f"installed {name}=={dist.version} is not in {lock.name}")
            elif Version(dist.version) != pins[name]:
                out.append(f"installed {name}=={dist.version}, {lock.name} pins {pins[name]}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements" / "lock.txt")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--installed", action="store_true",
                        help="also check the running environment against the lock")
    args = parser.parse_args(argv)
    found = problems(args.lock, args.pyproject, args.installed)
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        print("fix: nox -s lock (then commit requirements/lock.txt)", file=sys.stderr)
        return 1
    print(f"{args.lock.name} agrees with {args.pyproject.name}"
          + (" and the environment" if args.installed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
