from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from models import mappable, samples

from akida_workflows.convert import quantize_onnx, to_akida
from akida_workflows.errors import AkidaWorkflowError
from akida_workflows.evaluate import (
    StageReport,
    accuracy,
    compare_reports,
    confusion_matrix,
    evaluate,
    predict,
    wilson_interval,
)
from akida_workflows.export import export_onnx


def test_confusion_and_per_class_metrics_by_hand():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [1, 2, 0], [0, 0, 1]])
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)


def test_evaluate_metrics_from_scores():
    class Fixed(torch.nn.Module):
        def forward(self, x):  # predicts class = first pixel value
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()

    x = np.array([0, 1, 1, 2, 2, 2], dtype=np.float32).reshape(6, 1, 1, 1)
    y = np.array([0, 1, 2, 2, 2, 1])
    m = evaluate(Fixed(), x, y, classes=["a", "b", "c"])
    assert m.accuracy == pytest.approx(4 / 6)
    np.testing.assert_allclose(m.precision, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(m.recall, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(m.f1, [1.0, 0.5, 2 / 3])
    assert m.confusion.sum() == 6
    assert "precision" in m.table() and "         c" in m.table()


def test_evaluate_class_never_predicted_has_zero_precision():
    class Zero(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 2) + torch.tensor([1.0, 0.0])

    m = evaluate(Zero(), np.zeros((4, 1), np.float32), np.array([0, 0, 1, 1]))
    assert m.precision[1] == 0.0 and m.recall[1] == 0.0 and m.f1[1] == 0.0


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    model = mappable()
    exported = export_onnx(model, torch.from_numpy(samples(1)), tmp / "m.onnx")
    quantized = quantize_onnx(exported, samples())
    onnx.save(quantized, tmp / "q.onnx")
    akida_model = to_akida(quantized)
    akida_model.save(str(tmp / "m.fbz"))
    return model, exported, quantized, akida_model, tmp


def test_one_call_for_every_stage(stages):
    model, exported, quantized, akida_model, tmp = stages
    x = samples(32, seed=1)
    outs = {
        "torch": predict(model, x),
        "onnx": predict(exported, x),
        "onnx path": predict(tmp / "m.onnx", x),
        "quantized": predict(quantized, x),
        "quantized path": predict(tmp / "q.onnx", x),
        "akida": predict(akida_model, x),
        "fbz": predict(tmp / "m.fbz", x),
    }
    for out in outs.values():
        assert out.shape == (32, 10) and out.dtype == np.float32
    np.testing.assert_allclose(outs["onnx"], outs["torch"], atol=1e-4)
    # The quantized ONNX graph and the Akida model compute (nearly) the same thing,
    # and both stay close to float.
    np.testing.assert_array_equal(outs["akida"], outs["fbz"])
    assert np.mean(outs["akida"].argmax(1) == outs["quantized"].argmax(1)) >= 0.9
    assert np.mean(outs["akida"].argmax(1) == outs["torch"].argmax(1)) >= 0.8


def test_predict_rejects_bad_inputs(stages):
    model = stages[0]
    with pytest.raises(AkidaWorkflowError, match="float NCHW"):
        predict(model, np.zeros((2, 1, 16, 16), dtype=np.uint8))
    with pytest.raises(AkidaWorkflowError, match="non-empty"):
        predict(model, np.zeros((0, 1, 16, 16), dtype=np.float32))
    with pytest.raises(AkidaWorkflowError, match="cannot evaluate a dict"):
        predict({}, samples(2))
    with pytest.raises(AkidaWorkflowError, match="2 inputs but 3 labels"):
        evaluate(model, samples(2), [0, 1, 2])


def test_stage_report_table(tmp_path):
    float_file = tmp_path / "float.pt"
    float_file.write_bytes(b"x" * 4096)
    report = StageReport("tiny")
    report.add("float (PyTorch)", accuracy=0.98, path=float_file, seconds=12.345)
    report.add("Akida", accuracy=0.9712, size_bytes=1024, seconds=0.5, hw_fraction=0.75,
               eval_seconds=2.0)
    report.add("ONNX quantized", status="failed: QuantizeML error")
    text = str(report)
    assert "tiny" in text.splitlines()[0]
    assert "98.00 %" in text and "97.12 %" in text
    assert "4.0 KiB" in text and "1.0 KiB" in text
    assert "4.0x" in text and "12.3 s" in text and "0.50 s" in text and "75 %" in text
    assert "failed: QuantizeML error" in text
    assert report["Akida"].hw_fraction == 0.75
    html = report._repr_html_()
    assert html.startswith("<table") and "<td>97.12 %</td>" in html
    both = compare_reports(report, report)
    assert str(both).count("tiny") == 6 and "<th>model</th>" in both._repr_html_()


def test_stage_report_rejects_percent_accuracy():
    with pytest.raises(AkidaWorkflowError, match="fraction"):
        StageReport().add("x", accuracy=97.5)


def test_stage_report_program_column_only_when_given():
    report = StageReport("sizes")
    report.add("float (PyTorch)", accuracy=0.9, size_bytes=8192)
    assert "program" not in report._columns()
    report.add("Akida 1.0", accuracy=0.9, size_bytes=4096, program_bytes=2048, hw_fraction=1.0)
    cols = report._columns()
    assert cols[cols.index("size") + 1] == "program"
    assert "program" in str(report).splitlines()[1]
    records = report.records()
    assert records[0]["program"] == "-"  # the float stage has no program
    assert (records[1]["size"], records[1]["program"]) == ("4.0 KiB", "2.0 KiB")
    assert "<th>program</th>" in compare_reports(report)._repr_html_()
    for bad in (-1, 1.5, True):
        with pytest.raises(AkidaWorkflowError, match="program_bytes"):
            report.add("x", program_bytes=bad)


def test_wilson_interval_known_values():
    # 90/100: p = 0.9, z = 1.95996; centre 0.88521, half-width 0.05957 (by hand)
    low, high = wilson_interval(90, 100)
    assert low == pytest.approx(0.82564, abs=1e-4) and high == pytest.approx(0.94477, abs=1e-4)
    # 0 and 100 %: one-sided, upper bound z^2 / (n + z^2), never an empty interval
    z2 = 1.959964 ** 2
    assert wilson_interval(0, 100) == pytest.approx((0.0, z2 / (100 + z2)), abs=1e-6)
    assert wilson_interval(100, 100) == pytest.approx((100 / (100 + z2), 1.0), abs=1e-6)
    # wider at 99 % confidence and on fewer samples; always contains the estimate
    assert wilson_interval(90, 100, 0.99)[0] < low
    assert wilson_interval(9, 10)[0] < low < 0.9 < high < wilson_interval(9, 10)[1]


@pytest.mark.parametrize("correct, total, confidence", [
    (101, 100, 0.95), (-1, 100, 0.95), (5, 0, 0.95), (2.5, 10, 0.95), (5, 10, 1.0), (5, 10, 0),
])
def test_wilson_interval_refuses_bad_counts(correct, total, confidence):
    with pytest.raises(AkidaWorkflowError):
        wilson_interval(correct, total, confidence)
