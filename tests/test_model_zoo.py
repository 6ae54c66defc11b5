"""benchmarks/model_zoo.py's training recipe and goals, benchmarks/layer_sqnr.py's analysis."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
try:
    import layer_sqnr
    import model_zoo
finally:
    sys.path.pop(0)


def test_schedules():
    lr = model_zoo.schedule_lr
    assert lr("constant", 1e-3, 0.7) == 1e-3
    assert lr("cosine", 1.0, 0.0) == 1.0 and lr("cosine", 1.0, 1.0) == pytest.approx(0.0)
    assert lr("cosine", 1.0, 0.5) == pytest.approx(0.5)
    # one-cycle: warm-up from peak/25 to the peak at 20 %, then down to peak/25/1e4
    assert lr("onecycle", 1.0, 0.0) == pytest.approx(1 / 25)
    assert lr("onecycle", 1.0, 0.2) == pytest.approx(1.0)
    assert lr("onecycle", 1.0, 1.0) == pytest.approx(1 / 25 / 1e4)
    curve = [lr("onecycle", 1.0, t / 100) for t in range(101)]
    assert all(a <= b for a, b in zip(curve[:20], curve[1:21]))
    assert all(a >= b for a, b in zip(curve[20:], curve[21:]))
    with pytest.raises(ValueError):
        lr("step", 1.0, 0.5)


def test_scheduled_optimizer_follows_the_schedule():
    model = nn.Linear(3, 2)
    steps = 10
    opt = model_zoo.scheduled_optimizer("onecycle", steps, 1e-2)(model.parameters(), lr=0.1)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["weight_decay"] == 1e-2
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        seen.append(opt.param_groups[0]["lr"])
    expected = [model_zoo.schedule_lr("onecycle", 0.1, i / steps) for i in range(steps + 1)]
    assert seen == pytest.approx(expected)
    adam = model_zoo.scheduled_optimizer("constant", steps, 0)(model.parameters(), lr=0.1)
    assert type(adam).__mro__[1] is torch.optim.Adam


def _images(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = np.full((n, 1, 28, 28), -1.0, np.float32)  # background: -1 after preprocess
    x[:, :, 10:18, 4:12] = rng.uniform(0, 1, (n, 1, 8, 8))
    return x, np.arange(n) % 10


@pytest.mark.parametrize("augment", ["none", "flip", "shift", "shift-flip"])
def test_augmenting_loader_is_seeded_and_keeps_shapes(augment):
    from akida_workflows.training import seed_everything

    x, y = _images()

    def epoch():
        seed_everything(0)
        loader = model_zoo.augmenting_loader(x, y, 16, augment, seed=0)
        return [(a.clone(), b.clone()) for a, b in loader]

    first, second = epoch(), epoch()
    for (a, b), (c, d) in zip(first, second):
        assert torch.equal(a, c) and torch.equal(b, d)
    images = torch.cat([a for a, _ in first])
    assert images.shape == (40, 1, 28, 28)
    assert images.min() == -1  # padding is the background value
    # the patch's pixel sum survives a shift of at most 2 px (it stays inside the frame)
    assert torch.allclose(images.clamp(min=0).sum(dim=(1, 2, 3)).sort().values,
                          torch.from_numpy(x).clamp(min=0).sum(dim=(1, 2, 3)).sort().values,
                          atol=1e-4)
    if augment == "none":
        labels = torch.cat([b for _, b in first])
        order = [int(np.flatnonzero(np.all(x == img.numpy(), axis=(1, 2, 3)))[0]) for img in images]
        assert labels.tolist() == [int(y[i]) for i in order]
    else:
        moved = [not np.any(np.all(x == img.numpy(), axis=(1, 2, 3))) for img in images]
        assert any(moved)


def test_sqnr_db():
    f = np.array([3.0, 4.0])
    assert layer_sqnr.sqnr_db(f, f) == layer_sqnr.SQNR_CAP
    assert layer_sqnr.sqnr_db(f, f + np.array([0.3, 0.4])) == pytest.approx(20.0)
    assert layer_sqnr.sqnr_db(np.zeros(2), np.ones(2)) == -layer_sqnr.SQNR_CAP
    json.dumps(layer_sqnr.sqnr_db(f, -f), allow_nan=False)


def test_summarize_names_the_worst_layer_and_the_largest_drop():
    layers = [{"layer": "a", "cumulative": 40.0, "local": 41.0, "top code": 0.0},
              {"layer": "b", "cumulative": 20.0, "local": 21.5, "top code": 3.5},
              {"layer": "c", "cumulative": 18.0, "local": 30.0, "top code": 0.0},
              {"layer": "-", "error": "local: boom"}]
    text = layer_sqnr.summarize(layers)
    assert "a 40.0/41.0 (0 % top)" in text and "b 20.0/21.5 (3.5 % top)" in text
    assert "Lowest local SQNR: b (21.5 dB)" in text
    assert "largest cumulative drop: 20.0 dB at b" in text
    assert "not measured: local: boom" in text
    assert layer_sqnr.summarize([]) == "no quantized layer measured"


def test_goals():
    goal = model_zoo._goal
    text, met = goal("float (PyTorch)", 0.9006, 0.9006, None, "mlp")
    assert met and text.endswith(": met")
    text, met = goal("float (PyTorch)", 0.915, 0.915, None, "dscnn")
    assert met is False and "missed by 0.50 pt" in text
    assert goal("float (PyTorch)", 0.97, 0.97, None, "mnist_cnn")[1] is None
    full = SimpleNamespace(hw_fraction=1.0)
    assert goal("Akida 2.0 8-bit", 0.898, 0.9, full, "mlp") == (
        ">= float - 0.3 pt, 100 % in hardware: met", True)
    text, met = goal("Akida 1.0 4-bit PTQ", 0.88, 0.9, SimpleNamespace(hw_fraction=0.75), "x")
    assert met is False
    assert "accuracy missed by 1.00 pt" in text and "25.0 % of the layers in software" in text
    assert goal("Akida 1.0 4-bit fine-tuned", None, 0.9, None, "x") == ("", None)


def test_judge_explains_a_missed_quantization_goal():
    layers = [{"layer": "conv", "cumulative": 30.0, "local": 30.0, "top code": 0.0}]
    rows = [{"stage": "float (PyTorch)", "accuracy": 0.93, "note": "", "_mapping": None},
            {"stage": "Akida 2.0 8-bit", "accuracy": 0.92, "note": "",
             "_mapping": SimpleNamespace(hw_fraction=1.0), "per-layer SQNR (dB)": layers},
            {"stage": "Akida 1.0 4-bit PTQ", "accuracy": None, "note": "refused: no",
             "_mapping": None}]
    model_zoo._judge(rows, "resnet8")
    assert rows[0]["goal"].endswith(": met") and rows[0]["loss analysis"] == ""
    assert rows[1]["float - stage (pt)"] == 1.0
    assert "missed by 0.70 pt" in rows[1]["goal"]
    assert rows[1]["loss analysis"].startswith("per-layer SQNR")
    assert rows[2]["goal"] == "refused (see note)" and "float - stage (pt)" not in rows[2]
    assert all("_mapping" not in r for r in rows)


@pytest.mark.slow
def test_layer_sqnr_on_both_paths(tmp_path):
    from akida_workflows.convert import quantize_onnx
    from akida_workflows.export import export_onnx
    from akida_workflows.keras_bridge import quantize_4bit, separable_blocks, to_keras, to_nhwc

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU6(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4)).eval()
    x = np.random.default_rng(0).uniform(-1, 1, (32, 1, 8, 8)).astype(np.float32)
    exported = export_onnx(model, torch.from_numpy(x[:1]), tmp_path / "m.onnx")
    layers = layer_sqnr.onnx_layer_sqnr(exported.model, quantize_onnx(exported, x), x)
    assert [e for e in layers if "error" in e] == []
    assert len(layers) >= 3 and all(15 < e["cumulative"] <= layer_sqnr.SQNR_CAP for e in layers)
    keras_model = to_keras(model, (1, 8, 8))
    quantized = quantize_4bit(keras_model, to_nhwc(x, flip=keras_model))
    layers = layer_sqnr.keras_layer_sqnr(separable_blocks(keras_model), quantized,
                                         to_nhwc(x, flip=keras_model))
    assert [e for e in layers if "error" in e] == []
    assert len(layers) >= 3
    assert all(math.isfinite(e["cumulative"]) and math.isfinite(e["local"]) for e in layers)
    # 4-bit activations: tens of dB at most, below the 8-bit path's first layer
    assert min(e["cumulative"] for e in layers) < 30


def _row(family, command, date, data):
    return {"family": family, "stage": "float (PyTorch)", "accuracy": 0.9,
            "run": {"command": command, "date": date, "data": data, "threads": 1}}


def test_provenance_is_built_from_the_rows_and_does_not_grow():
    """--keep mixes runs: Data and Notes name each run once, however many runs came before."""
    fm = "full Fashion-MNIST (60000 train / 10000 test)"
    rows = [_row("MLP", "cmd --families mlp", "2026-12-05T09:00:00+00:00",
                 f"{fm}; MLP: 40 epochs"),
            _row("MLP", "cmd --families mlp", "2026-12-05T09:00:00+00:00",
                 f"{fm}; MLP: 40 epochs"),
            _row("DS-CNN", "cmd --families dscnn", "2026-12-05T10:00:00+00:00",
                 f"{fm}; DS-CNN: 40 epochs")]
    data, notes = model_zoo.provenance(rows)
    assert data == f"{fm}; MLP: 40 epochs; DS-CNN: 40 epochs"  # the data set named once
    assert notes.count("measured on") == 2
    assert notes.index("`cmd --families mlp`") < notes.index("`cmd --families dscnn`")
    # the committed results: every row names its run, and the texts stay short
    result = json.loads((Path(__file__).resolve().parents[1] / "docs" / "results"
                         / "model_zoo.json").read_text())
    assert all({"command", "date", "data"} <= set(r["run"]) for r in result["rows"])
    assert (result["data"], result["notes"]) == model_zoo.provenance(result["rows"])
    assert "kept from the run" not in result["notes"] + result["data"]
    assert len(result["notes"]) < 1500 and len(result["data"]) < 1500
