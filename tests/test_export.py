from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from akida_workflows.errors import ExportError
from akida_workflows.export import OnnxExport, export_onnx


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 14 * 14, 10),
    ).eval()


def test_export_checks_parity_and_dynamic_batch(tmp_path):
    model = _cnn()
    result = export_onnx(model, torch.rand(2, 1, 28, 28), tmp_path / "sub" / "m.onnx")
    assert isinstance(result, OnnxExport)
    assert result.path.is_file() and result.size_bytes == result.path.stat().st_size
    assert 0.0 <= result.max_abs_diff < 1e-4
    assert isinstance(result.model, onnx.ModelProto)
    assert result.graph is result.model.graph  # reads like the ModelProto itself
    assert [n.op_type for n in result.graph.node][0] == "Conv"
    # Dynamic batch axis: any batch size runs.
    session = ort.InferenceSession(str(result.path))
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    out = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(out, model(torch.from_numpy(x)).detach().numpy(), atol=1e-4)


def test_export_accepts_numpy_and_restores_training_mode(tmp_path):
    model = _cnn().train()
    export_onnx(model, np.zeros((1, 1, 28, 28), dtype=np.float32), tmp_path / "m.onnx")
    assert model.training


def test_export_rejects_nan_weights(tmp_path):
    model = _cnn()
    with torch.no_grad():
        model[5].weight[0, 0] = float("inf")
    with pytest.raises(ExportError, match=r"'5.weight'.*NaN/inf"):
        export_onnx(model, torch.rand(1, 1, 28, 28), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_export_rejects_nan_running_stats(tmp_path):
    model = _cnn()
    model[1].running_var[0] = float("nan")
    with pytest.raises(ExportError, match="1.running_var"):
        export_onnx(model, torch.rand(1, 1, 28, 28), tmp_path / "m.onnx")


@pytest.mark.parametrize("sample, match", [
    (torch.zeros(1, 1, 28, 28, dtype=torch.uint8), "dtype"),
    (torch.zeros(28), "batch axis"),
    ([[0.0]], "torch.Tensor or numpy"),
])
def test_export_rejects_bad_samples(tmp_path, sample, match):
    with pytest.raises(ExportError, match=match):
        export_onnx(_cnn(), sample, tmp_path / "m.onnx")


def test_export_rejects_a_graph_that_disagrees(tmp_path):
    class Noisy(nn.Module):
        def forward(self, x):
            return x + torch.randn_like(x)  # traced as a random op: ONNX differs

    with pytest.raises(ExportError, match="differ"):
        export_onnx(Noisy(), torch.zeros(1, 3), tmp_path / "m.onnx")


def test_export_wrong_input_shape_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match=r"does not accept a sample of shape \(1, 3, 28, 28\)"):
        export_onnx(_cnn(), torch.rand(1, 3, 28, 28), tmp_path / "m.onnx")
