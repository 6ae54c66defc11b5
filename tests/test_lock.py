"""The lock (requirements/lock.txt) agrees with pyproject.toml, and the checker catches drift."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import check_lock  # noqa: E402

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]

[project]
name = "akida-workflows"
dependencies = ["numpy>=1.26,<2.2", "protobuf<6"]

[project.optional-dependencies]
test = ["pytest>=8"]
"""

LOCK = """#
#    nox -s lock  (pip-compile --extra=test)
#
numpy==2.1.3
    # via akida-workflows (pyproject.toml)
protobuf==5.29.6
    # via
    #   akida-workflows (pyproject.toml)
    #   onnx
pytest==9.0.1
    # via akida-workflows (pyproject.toml)
setuptools==84.2.1
    # via tensorflow
"""


def _files(tmp_path, pyproject=PYPROJECT, lock=LOCK):
    (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "lock.txt").write_text(lock)
    return tmp_path / "lock.txt", tmp_path / "pyproject.toml"


def test_repository_lock_agrees_with_pyproject():
    assert check_lock.problems(ROOT / "requirements" / "lock.txt", ROOT / "pyproject.toml") == []


def test_repository_lock_pins_the_bounds_the_stack_needs():
    pins, direct, extras = check_lock.read_lock(ROOT / "requirements" / "lock.txt")
    assert pins["protobuf"].major < 6 and pins["numpy"] < check_lock.Version("2.2")
    assert str(pins["torch"]).endswith("+cpu")  # never a CUDA build
    assert {"cpu", "docs", "test", "lint"} <= extras
    assert {"quantizeml", "cnn2snn", "akida", "numpy", "protobuf"} <= direct


def test_consistent_files_pass(tmp_path):
    assert check_lock.problems(*_files(tmp_path)) == []


def test_dependency_added_to_pyproject_only(tmp_path):
    pyproject = PYPROJECT.replace('"protobuf<6"', '"protobuf<6", "tqdm>=4.66"')
    found = check_lock.problems(*_files(tmp_path, pyproject=pyproject))
    assert found == ["tqdm>=4.66 (pyproject.toml) has no pin in lock.txt"]


def test_dependency_removed_from_pyproject_only(tmp_path):
    pyproject = PYPROJECT.replace(', "protobuf<6"', "")
    found = check_lock.problems(*_files(tmp_path, pyproject=pyproject))
    assert found == ["lock.txt pins protobuf for the project, but pyproject.toml no longer "
                     "asks for it"]


def test_pin_outside_pyproject_range(tmp_path):
    found = check_lock.problems(*_files(tmp_path, lock=LOCK.replace("5.29.6", "7.36.2")))
    assert found == ["lock.txt pins protobuf==7.36.2, outside pyproject's protobuf<6"]


def test_extra_not_compiled(tmp_path):
    pyproject = PYPROJECT + 'docs = ["sphinx==9.0.4"]\n'
    found = check_lock.problems(*_files(tmp_path, pyproject=pyproject))
    assert "extra [docs] of pyproject.toml is not compiled into lock.txt" in found
    assert "sphinx==9.0.4 (pyproject.toml) has no pin in lock.txt" in found


def test_build_backend_must_be_locked(tmp_path):
    lock = LOCK.replace("setuptools==84.2.1\n    # via tensorflow\n", "")
    assert check_lock.problems(*_files(tmp_path, lock=lock)) == [
        "setuptools>=68 (pyproject.toml) has no pin in lock.txt"]


def test_garbage_line_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unexpected line"):
        check_lock.problems(*_files(tmp_path, lock=LOCK + "numpy>=2\n"))


def test_cli_exit_codes(tmp_path, capsys):
    lock, pyproject = _files(tmp_path)
    assert check_lock.main(["--lock", str(lock), "--pyproject", str(pyproject)]) == 0
    lock.write_text(LOCK.replace("numpy==2.1.3", "numpy==2.4.0"))
    assert check_lock.main(["--lock", str(lock), "--pyproject", str(pyproject)]) == 1
    assert "fix: nox -s lock" in capsys.readouterr().err
