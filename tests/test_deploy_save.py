"""deploy.save writes atomically: a failed or interrupted save leaves no partial .fbz."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from akida_workflows import deploy
from akida_workflows.errors import AkidaWorkflowError

X = np.random.default_rng(1).integers(-100, 100, (4, 1, 1, 16)).astype(np.int8)
OLD = b"the previous, complete model"


@pytest.fixture(scope="module")
def tiny():
    """A two-layer Akida 2.0 model built directly (no conversion: milliseconds)."""
    import akida

    model = akida.Model()
    model.add(akida.InputData(input_shape=(1, 1, 16), input_bits=8))
    model.add(akida.Dense1D(units=4, output_bits=8))
    model.add(akida.Dequantizer())
    weights = model.layers[1].variables["weights"]
    model.layers[1].variables["weights"] = np.random.default_rng(0).integers(
        -100, 100, weights.shape).astype(weights.dtype)
    return model


class Interrupted:
    """Delegates to a model, but its save() writes half the file, then raises."""

    def __init__(self, model, exc, shift=0):
        self.model, self.exc, self.shift = model, exc, shift

    def save(self, path):
        self.model.save(path)
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        raise self.exc

    def predict(self, x):
        return self.model.predict(x) + self.shift


class Drifting(Interrupted):
    """Saves correctly, but computes something else than the file it wrote."""

    def save(self, path):
        self.model.save(path)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != "m.fbz")


def test_save_replaces_the_old_file_only_when_complete(tiny, tmp_path):
    target = tmp_path / "m.fbz"
    target.write_bytes(OLD)
    path = deploy.save(tiny, target, check_inputs=X)
    assert path == target and target.read_bytes() != OLD
    np.testing.assert_array_equal(deploy.load(target).predict(X), tiny.predict(X))
    assert _leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not a private temp file's mode


@pytest.mark.parametrize("exc, raised", [(OSError("disk full"), AkidaWorkflowError),
                                         (KeyboardInterrupt(), KeyboardInterrupt)])
@pytest.mark.parametrize("existing", [True, False])
def test_failure_while_writing_leaves_nothing(tiny, tmp_path, exc, raised, existing):
    target = tmp_path / "m.fbz"
    if existing:
        target.write_bytes(OLD)
    with pytest.raises(raised):
        deploy.save(Interrupted(tiny, exc), target)
    assert (target.read_bytes() == OLD) if existing else not target.exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("existing", [True, False])
def test_failed_reload_check_leaves_nothing(tiny, tmp_path, existing):
    target = tmp_path / "m.fbz"
    if existing:
        target.write_bytes(OLD)
    with pytest.raises(AkidaWorkflowError, match="outputs differ; the file was not written"):
        deploy.save(Drifting(tiny, None, shift=1), target, check_inputs=X)
    assert (target.read_bytes() == OLD) if existing else not target.exists()
    assert _leftovers(tmp_path) == []


def test_reload_that_fails_or_is_interrupted_leaves_nothing(tiny, tmp_path, monkeypatch):
    target = tmp_path / "m.fbz"
    target.write_bytes(OLD)

    def crashing_load(path, **kwargs):
        raise AkidaWorkflowError(f"{path} is not a valid Akida model: Akida's native loader "
                                 "crashed on it (SIGSEGV)")

    monkeypatch.setattr(deploy, "load", crashing_load)
    with pytest.raises(AkidaWorkflowError, match=r"m\.fbz: the written model does not reload"):
        deploy.save(tiny, target, check_inputs=X)

    def interrupted_load(path, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(deploy, "load", interrupted_load)
    with pytest.raises(KeyboardInterrupt):
        deploy.save(tiny, target, check_inputs=X)
    assert target.read_bytes() == OLD and _leftovers(tmp_path) == []


def test_failed_rename_leaves_nothing(tiny, tmp_path, monkeypatch):
    target = tmp_path / "m.fbz"

    def no_replace(src, dst):
        raise PermissionError(f"cannot replace {dst}")

    monkeypatch.setattr(deploy.os, "replace", no_replace)
    with pytest.raises(PermissionError):
        deploy.save(tiny, target)
    assert list(tmp_path.iterdir()) == []


def test_load_survives_a_file_that_crashes_akida(tiny, tmp_path):
    """akida.Model(path) segfaults on a truncated .fbz; deploy.load raises instead."""
    tiny.save(str(tmp_path / "full.fbz"))
    data = (tmp_path / "full.fbz").read_bytes()
    (tmp_path / "cut.fbz").write_bytes(data[: len(data) // 3])
    control = subprocess.run([sys.executable, "-c", "import akida, sys; akida.Model(sys.argv[1])",
                              str(tmp_path / "cut.fbz")], capture_output=True, timeout=120)
    assert control.returncode == -signal.SIGSEGV  # akida 2.19.3 itself crashes on this file
    with pytest.raises(AkidaWorkflowError, match=r"cut\.fbz is not a valid Akida model: "
                                                 r"Akida's native loader crashed on it \(SIGSEGV\)"):
        deploy.load(tmp_path / "cut.fbz")
    (tmp_path / "empty.fbz").write_bytes(b"")
    with pytest.raises(AkidaWorkflowError, match="the file is empty"):
        deploy.load(tmp_path / "empty.fbz")
