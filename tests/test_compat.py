"""check_compatibility agrees with the real toolchain on a zoo of models."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from zoo import SHAPE, zoo

from akida_workflows.compat import CompatibilityReport, check_compatibility
from akida_workflows.errors import AkidaWorkflowError, IncompatibleModelError

ZOO = zoo()
SAMPLES = np.random.default_rng(0).uniform(-1, 1, (64, *SHAPE)).astype(np.float32)


def real_toolchain(model, target, tmp_path) -> bool:
    """Independent, strict run: True when the model converts and maps entirely in hardware."""
    import akida

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if target == "akida2":
                from akida_workflows.convert import quantize_onnx, to_akida
                from akida_workflows.export import export_onnx

                exported = export_onnx(model, torch.from_numpy(SAMPLES[:1]), tmp_path / "m.onnx")
                akida_model = to_akida(quantize_onnx(exported, SAMPLES))
                device = akida.SixNodesIPv2()
            else:
                from akida_workflows.folding import fold_batchnorm
                from akida_workflows.keras_bridge import (
                    convert_keras,
                    quantize_4bit,
                    to_keras,
                    to_nhwc,
                )

                folded = fold_batchnorm(model, strict=True)
                keras_model = to_keras(folded, SHAPE)
                akida_model = convert_keras(quantize_4bit(keras_model, to_nhwc(SAMPLES)))
                device = akida.AKD1000()
        akida.Model(layers=list(akida_model.layers)).map(device, hw_only=True)
        return True
    except Exception:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("target", ["akida2", "akida1"])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_report_agrees_with_the_toolchain(name, target, tmp_path):
    model = ZOO[name]
    report = check_compatibility(model, SHAPE, target, samples=SAMPLES)
    real = real_toolchain(model, target, tmp_path)
    assert report.ok == real, f"{name}/{target}: report says ok={report.ok}, toolchain {real}\n{report}"
    if not report.ok:
        modules = {n for n, _ in model.named_modules()}
        assert all(issue.reason and issue.fix for issue in report.issues), report
        # Issues are reported in PyTorch terms: module names (or the fx name of a
        # functional op such as a residual `add`), never ONNX or Keras names.
        assert all("/" not in issue.module for issue in report.issues), report
        if isinstance(model, torch.nn.Sequential):
            assert any(issue.module in modules for issue in report.issues), report


EXPECTED = {  # (model, target): {module: status}
    ("bn_after_activation", "akida2"): {"3": "fixable"},
    ("valid_padding", "akida2"): {"3": "fixable"},
    ("pooled_last_conv", "akida2"): {"3": "fixable"},
    ("dense_over_2048", "akida2"): {"3": "fixable"},
    ("unbounded_relu", "akida1"): {"1": "fixable", "4": "fixable"},
    ("lstm", "akida2"): {"lstm": "unsupported"},
    ("attention", "akida1"): {"attn": "unsupported"},
    ("sigmoid_inside", "akida1"): {"3": "unsupported"},
    ("gelu", "akida2"): {"1": "unsupported"},
    ("gelu", "akida1"): {"1": "fixable", "4": "fixable"},
    ("residual_add", "akida1"): {},
}


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_expected_verdicts(key):
    name, target = key
    report = check_compatibility(ZOO[name], SHAPE, target, samples=SAMPLES)
    assert not report.ok
    statuses = {r.module: r.status for r in report.rows}
    for module, status in EXPECTED[key].items():
        assert statuses.get(module) == status, report


@pytest.mark.slow
def test_final_softmax_runs_on_the_host_for_akida1():
    # The Akida model returns the logits (same argmax); the softmax runs on the host.
    report = check_compatibility(ZOO["softmax_head"], SHAPE, "akida1", samples=SAMPLES)
    assert report.ok, report
    assert {r.module: r.status for r in report.rows}["7"] == "ok"


def test_bn_fix_depends_on_foldability():
    report = check_compatibility(ZOO["bn_after_activation"], SHAPE, "akida2", samples=SAMPLES)
    fix = next(r.fix for r in report.issues if r.kind == "BatchNorm2d")
    assert "move the BatchNorm before the activation" in fix


def test_report_api():
    report = check_compatibility(ZOO["valid_padding"], SHAPE, "akida2", samples=SAMPLES)
    assert isinstance(report, CompatibilityReport)
    assert [r.module for r in report.rows][:3] == ["0", "1", "2"]
    assert "fixable" in str(report) and "<table" in report._repr_html_()
    with pytest.raises(IncompatibleModelError) as info:
        report.raise_for_status()
    assert "3" in info.value.nodes
    good = check_compatibility(ZOO["mappable"], SHAPE, "akida2", samples=SAMPLES)
    assert good.ok and good.hw_fraction == 1.0
    good.raise_for_status()


def test_bad_arguments():
    with pytest.raises(AkidaWorkflowError, match="target"):
        check_compatibility(ZOO["mappable"], SHAPE, "akida3")
    with pytest.raises(AkidaWorkflowError, match="input_shape"):
        check_compatibility(ZOO["mappable"], (0, 16, 16))
