from __future__ import annotations

import numpy as np
import pytest
import torch
from models import mappable, samples, valid_padding, wide_dense

from akida_workflows import deploy
from akida_workflows.convert import quantize_onnx, to_akida
from akida_workflows.deploy import load, map_report, save
from akida_workflows.errors import AkidaWorkflowError, MappingError
from akida_workflows.export import export_onnx


def _akida(factory, tmp_path):
    exported = export_onnx(factory(), torch.from_numpy(samples(1)), tmp_path / "m.onnx")
    return to_akida(quantize_onnx(exported, samples()))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return _akida(mappable, tmp_path_factory.mktemp("good"))


def test_mappable_model_maps_entirely(good):
    report = map_report(good, "SixNodesIPv2")
    assert report.fully_mapped and report.hw_fraction == 1.0
    assert [layer.backend for layer in report.compute_layers] == ["hardware"] * 3
    assert all(layer.nps for layer in report.compute_layers)
    assert not any(layer.reason for layer in report.layers)
    assert sum(report.np_counts.values()) >= 3
    assert "3/3 compute layers in hardware (100 %)" in str(report)
    # The caller's model is left unmapped (it still predicts in software).
    assert good.predict(samples(2)).shape[0] == 2


def test_valid_padding_stays_in_software_with_reason(tmp_path):
    report = map_report(_akida(valid_padding, tmp_path), "SixNodesIPv2")
    assert not report.fully_mapped and report.hw_fraction < 1.0
    reasons = {layer.name: layer.reason for layer in report.software_layers}
    assert any("padding 'Same'" in r for r in reasons.values()), reasons
    assert all(reasons.values()), "every software layer has a reason"
    assert "why not in hardware" in report._repr_html_()


def test_wide_dense_reason_names_the_limit(tmp_path):
    report = map_report(_akida(wide_dense, tmp_path), "TwoNodesIPv2")
    dense = [layer for layer in report.software_layers if layer.layer_type == "Dense1D"]
    assert dense and "2048" in dense[0].reason


def test_device_by_object_and_bad_names(good):
    import akida

    assert map_report(good, akida.TwoNodesIPv2()).fully_mapped
    with pytest.raises(MappingError, match="unknown virtual device 'AKD9000'"):
        map_report(good, "AKD9000")
    with pytest.raises(MappingError, match="expected an akida.Model"):
        map_report("model.fbz", "SixNodesIPv2")


def test_akida2_model_on_akida1_device_is_a_mapping_error(good):
    with pytest.raises(MappingError, match="AKD1000"):
        map_report(good, "AKD1000")


def test_save_load_round_trip(good, tmp_path):
    x = samples(8)
    path = save(good, tmp_path / "deep" / "m.fbz", check_inputs=x)
    assert path.is_file() and path.stat().st_size > 0
    np.testing.assert_array_equal(load(path).predict(x), good.predict(x))


def test_save_load_errors(good, tmp_path):
    with pytest.raises(AkidaWorkflowError, match=r"\.fbz"):
        save(good, tmp_path / "m.onnx")
    with pytest.raises(AkidaWorkflowError, match="not found"):
        load(tmp_path / "missing.fbz")
    bad = tmp_path / "bad.fbz"
    bad.write_bytes(b"garbage")
    with pytest.raises(AkidaWorkflowError, match="not a valid Akida model"):
        load(bad)


def test_reason_parser():
    message = ("Cannot map layer '/0/Conv':\n  * Layer '/0/Conv': A layer with max pooling "
               "cannot be the last layer of a sequence.\n  * Layer '/3/Conv': Only padding "
               "'Same' and 'SameUpper' are supported.")
    assert deploy._parse_reasons(message) == {
        "/0/Conv": "A layer with max pooling cannot be the last layer of a sequence.",
        "/3/Conv": "Only padding 'Same' and 'SameUpper' are supported.",
    }
    single = "Cannot map layer '/7/Gemm'. Input dimensions are too large to fit in a FNP."
    assert deploy._parse_reasons(single) == {
        "/7/Gemm": "Input dimensions are too large to fit in a FNP."
    }


# ------------------------------------------------ agreement with map(hw_only=True) on the zoo

from zoo import DEVICES, hw_only, zoo_conversion  # noqa: E402
from zoo import zoo as _zoo  # noqa: E402

ZOO_NAMES = sorted(_zoo())


def _agrees_with_hw_only(name, target, akida_model) -> bool:
    """map_report of one converted zoo model against map(device, hw_only=True); the judge."""
    report = map_report(akida_model, DEVICES[target])
    judge, message = hw_only(akida_model, target)
    assert report.fully_mapped == judge, (report, message)
    assert (report.hw_fraction == 1.0) == judge, report
    assert bool(report.hw_only_error) == (not judge)
    if judge:
        assert not report.software_layers
        assert all(layer.backend == "hardware" and layer.sequence is not None
                   for layer in report.layers)
    else:
        assert report.software_layers and all(layer.reason for layer in report.software_layers)
    # Layers without NPs of their own (Add, …) inside hardware sequences count as hardware.
    for layer in report.compute_layers:
        if layer.backend == "hardware":
            assert layer.nps[:1].isdigit() or layer.nps == "none needed", layer
    # No layer is ever mapped on its own to get a reason.
    assert not any("inbound" in layer.reason for layer in report.layers), report
    return judge


@pytest.mark.slow
@pytest.mark.parametrize("target", ["akida2", "akida1"])
def test_map_report_agrees_with_hw_only_mapping(target):
    """On every zoo model that converts for ``target`` (the CLI's conversion, shared with
    test_cli, which also checks that the others are refused with the reason)."""
    failures, judges = [], {}
    for name in ZOO_NAMES:
        akida_model, _ = zoo_conversion(name, target)
        if akida_model is None:
            continue
        try:
            judges[name] = _agrees_with_hw_only(name, target, akida_model)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)
    # Both branches are exercised: models that map entirely and models that do not.
    assert judges.get("mappable") is True and judges.get("valid_padding") is False, judges
    assert {"bn_before_activation", "pooled_last_conv", "softmax_head"} <= set(judges), judges


@pytest.mark.slow
def test_residual_adds_are_hardware_without_nps():
    akida_model, why = zoo_conversion("resnet8", "akida2")
    assert akida_model is not None, why
    report = map_report(akida_model, "SixNodesIPv2")
    adds = [layer for layer in report.layers if layer.layer_type == "Add"]
    assert len(adds) == 3
    assert all(a.backend == "hardware" and a.nps == "none needed" and a.compute for a in adds)
    assert report.fully_mapped and report.hw_fraction == 1.0
    assert f"{len(report.compute_layers)}/{len(report.compute_layers)} compute layers" in str(report)
    assert len(report.sequences) == 1 and report.sequences[0][0] == "hardware"


@pytest.mark.slow
def test_partial_residual_model_has_reasons_without_single_layer_mapping():
    akida_model, why = zoo_conversion("residual_partial", "akida2")
    assert akida_model is not None, why
    report = map_report(akida_model, "SixNodesIPv2")
    assert not report.fully_mapped and 0 < report.hw_fraction < 1
    assert any("padding" in layer.reason for layer in report.software_layers), report


def test_summary_reports_program_beside_fbz(good, tmp_path):
    summary = deploy.summarize(good, "SixNodesIPv2", batch_size=4, repeat=1)
    assert summary.fits
    assert summary.fbz_bytes == save(good, tmp_path / "m.fbz").stat().st_size
    mapped = map_report(good, "SixNodesIPv2").model
    assert summary.program_bytes == sum(len(s.program) for s in mapped.sequences) > 0
    text = str(summary)
    assert "program size (mapped)" in text and ".fbz file size" in text
    assert f"{summary.fbz_bytes / 1024:.1f} KiB" in text


def test_4bit_program_is_smaller_than_8bit_while_fbz_is_not():
    """The .fbz stores a byte per weight; the mapped program packs 4-bit weights.

    Same network, same Akida 2.0 device, 4-bit versus 8-bit weights (Keras path).
    """
    from akida_workflows.keras_bridge import convert_keras, quantize_4bit, to_keras, to_nhwc

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU6(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU6(), torch.nn.Flatten(),
        torch.nn.Linear(32 * 8 * 8, 128), torch.nn.ReLU6(), torch.nn.Linear(128, 10)).eval()
    keras_model = to_keras(model, (1, 16, 16))
    x = to_nhwc(np.random.default_rng(0).uniform(0, 1, (16, 1, 16, 16)).astype(np.float32))
    summaries = {
        bits: deploy.summarize(
            convert_keras(quantize_4bit(keras_model, x, akida_version="v2", weight_bits=bits,
                                        activation_bits=bits)),
            "SixNodesIPv2", batch_size=2, repeat=1)
        for bits in (4, 8)
    }
    assert all(s.fits for s in summaries.values())
    fbz = {bits: s.fbz_bytes for bits, s in summaries.items()}
    program = {bits: s.program_bytes for bits, s in summaries.items()}
    assert abs(fbz[4] - fbz[8]) < 0.05 * fbz[8], fbz
    assert program[4] < 0.6 * program[8], program
