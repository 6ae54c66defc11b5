"""tests/zoo.py's verdict memo judges a model once, and never mistakes one model for another."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from zoo import fingerprint


def _cropper(width: int) -> nn.Module:
    class Crop(nn.Module):  # the same class name and weights; only a constant differs
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(x[:, :, :width])

    return Crop().eval()


def test_fingerprint_tells_apart_what_the_verdict_depends_on():
    base = fingerprint(_cropper(8), (1, 16, 16), "akida1")
    assert base == fingerprint(_cropper(8), (1, 16, 16), "akida1")  # same model: one verdict
    assert base != fingerprint(_cropper(12), (1, 16, 16), "akida1")  # a constant in forward
    assert base != fingerprint(_cropper(8), (1, 16, 16), "akida2")  # the target
    assert base != fingerprint(_cropper(8), (1, 16, 12), "akida1")  # the input shape
    assert base != fingerprint(_cropper(8).train(), (1, 16, 16), "akida1")  # the mode
    changed = _cropper(8)
    with torch.no_grad():
        changed.conv.weight[0, 0, 0, 0] += 1e-3
    assert base != fingerprint(changed, (1, 16, 16), "akida1")  # one weight
    x = np.zeros((4, 1, 16, 16), np.float32)
    assert fingerprint(_cropper(8), (1, 16, 16), "akida1", x) != \
        fingerprint(_cropper(8), (1, 16, 16), "akida1", x + 1)  # the calibration samples
    # Hyperparameters that only the module's repr shows (a leaf module's stride)
    a = nn.Sequential(nn.Conv2d(1, 4, 3, stride=1))
    b = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2))
    b.load_state_dict(a.state_dict())
    assert fingerprint(a, (1, 16, 16), "akida1") != fingerprint(b, (1, 16, 16), "akida1")


def test_untraceable_models_are_not_memoized():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow: torch.fx refuses

    assert fingerprint(Branchy(), (1, 4, 4), "akida2") is None


def _replay_setup(monkeypatch, tmp_path, stamp):
    """A record holding a made-up verdict for one model, and a judge that counts its calls."""
    import json

    import zoo

    model = _cropper(8)
    key = fingerprint(model, (1, 16, 16), "akida1")
    record = tmp_path / "verdicts.json"
    record.write_text(json.dumps({"stamp": stamp, "verdicts": {key: [False, "recorded"]}}))
    monkeypatch.setattr(zoo, "VERDICT_RECORD", record)
    monkeypatch.setattr(zoo, "_RECORDS", {})
    monkeypatch.setattr(zoo, "_VERDICTS", {})
    monkeypatch.setenv("AW_ZOO_CACHE", str(tmp_path))
    monkeypatch.delenv("AW_TOOLCHAIN_LIVE", raising=False)
    calls = []
    monkeypatch.setattr(zoo, "_judge", lambda *args: calls.append(args) or (True, ""))
    return model, calls


def test_a_verdict_is_replayed_only_under_the_stamp_it_was_recorded_with(monkeypatch, tmp_path):
    from zoo import real_toolchain, toolchain_stamp

    model, calls = _replay_setup(monkeypatch, tmp_path, toolchain_stamp())
    assert real_toolchain(model, (1, 16, 16), "akida1") == (False, "recorded")
    assert not calls
    assert real_toolchain(_cropper(12), (1, 16, 16), "akida1") == (True, "")  # another model
    assert len(calls) == 1

    stale = {**toolchain_stamp(), "code": "other library code"}
    (tmp_path / "stale").mkdir()
    model, calls = _replay_setup(monkeypatch, tmp_path / "stale", stale)
    assert real_toolchain(model, (1, 16, 16), "akida1") == (True, "")  # computed, not replayed
    assert len(calls) == 1
    versions = dict(toolchain_stamp()["versions"], akida="0.0")
    (tmp_path / "versions").mkdir()
    model, calls = _replay_setup(monkeypatch, tmp_path / "versions",
                                 {**toolchain_stamp(), "versions": versions})
    assert real_toolchain(model, (1, 16, 16), "akida1") == (True, "")
    assert len(calls) == 1


def test_live_toolchain_ignores_the_record(monkeypatch, tmp_path):
    from zoo import real_toolchain, toolchain_stamp

    model, calls = _replay_setup(monkeypatch, tmp_path, toolchain_stamp())
    monkeypatch.setenv("AW_TOOLCHAIN_LIVE", "1")
    assert real_toolchain(model, (1, 16, 16), "akida1") == (True, "")
    assert len(calls) == 1


def test_the_code_digest_changes_with_any_library_file(tmp_path):
    from zoo import code_digest

    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    (package / "data.bin").write_bytes(b"\0")
    base = code_digest(package)
    (package / "data.bin").write_bytes(b"\1")  # not code
    assert code_digest(package) == base
    (package / "sub" / "b.py").write_text("y = 3\n")
    assert code_digest(package) != base
    (package / "sub" / "b.py").write_text("y = 2\n")
    (package / "c.py").write_text("")  # a new module
    assert code_digest(package) != base
    (package / "c.py").unlink()
    assert code_digest(package) == base
    extra = tmp_path / "zoo.py"
    extra.write_text("judge = 1\n")
    assert code_digest(package, extra) != base


def test_a_run_summary_finds_a_disagreement_and_the_record_keeps_what_was_used(monkeypatch,
                                                                             tmp_path):
    import json

    import zoo

    record = tmp_path / "verdicts.json"
    record.write_text(json.dumps({"stamp": zoo.toolchain_stamp(), "verdicts": {
        "a": [True, ""], "b": [False, "refused"], "unused": [True, ""]}}))
    run = tmp_path / "run"
    run.mkdir()
    for key in ("a", "b", "c"):
        (run / f"used-{key}").touch()
    (run / "verdict-b.json").write_text(json.dumps([True, ""]))  # computed: now it converts
    (run / "verdict-c.json").write_text(json.dumps([False, "new"]))
    summary = zoo.verdict_run_summary(run, record)
    assert summary["current"] and summary["disagree"] == ["b"] and summary["replayed"] == 1
    assert zoo.write_verdict_record(summary, record) == 4  # a run of some files adds to it
    kept = json.loads(record.read_text())
    assert kept["verdicts"] == {"a": [True, ""], "b": [True, ""], "c": [False, "new"],
                                "unused": [True, ""]}
    assert kept["stamp"] == zoo.toolchain_stamp()
    # under another stamp, only what this run used is kept
    record.write_text(json.dumps({"stamp": {"code": "old"}, "verdicts": {
        "a": [True, ""], "unused": [True, ""]}}))
    summary = zoo.verdict_run_summary(run, record)
    assert not summary["current"] and summary["old"] == {}  # a stale record says nothing
    with pytest.raises(RuntimeError, match="no verdict for a"):  # (a run computes it)
        zoo.write_verdict_record(summary, record)
