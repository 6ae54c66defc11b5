"""The akida-workflows command line, driven as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from models import mappable, samples, valid_padding
from zoo import zoo

from akida_workflows.export import export_onnx

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "akida_workflows", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    good = mappable()
    export_onnx(good, torch.from_numpy(samples(1)), tmp / "good.onnx")
    torch.save(good, tmp / "good.pt")
    torch.jit.save(torch.jit.trace(good, torch.from_numpy(samples(1))), tmp / "good_ts.pt")
    torch.save(valid_padding(), tmp / "valid.pt")
    torch.save(zoo()["mappable"], tmp / "relu6.pt")
    np.save(tmp / "calib.npy", samples(32))
    np.save(tmp / "calib_nhwc.npy", np.transpose(samples(32), (0, 2, 3, 1)))
    np.save(tmp / "calib_u8.npy", np.zeros((4, 1, 16, 16), np.uint8))
    np.save(tmp / "calib_3d.npy", samples(4)[:, 0])
    (tmp / "corrupt.onnx").write_bytes(b"\x08\x01garbage")
    torch.export.save(torch.export.export(good, (torch.from_numpy(samples(1)),)), tmp / "good.pt2")
    return tmp


@pytest.mark.parametrize("command", [[], ["check"], ["convert"], ["info"]])
def test_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0
    assert "usage: akida-workflows" in result.stdout


def test_console_script_is_installed():
    import shutil

    path = shutil.which("akida-workflows")
    if path is None:
        pytest.skip("console script not on PATH (package not installed)")
    assert subprocess.run([path, "--help"], capture_output=True, env=ENV).returncode == 0


def test_convert_onnx_then_info(files):
    out = files / "good_v2.fbz"
    result = run("convert", files / "good.onnx", "--samples", files / "calib.npy",
                 "--target", "akida2", "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    assert "3/3 compute layers in hardware" in result.stdout
    assert "quantized ONNX (8-bit)" in result.stdout and "Akida 2.0 8-bit (.fbz)" in result.stdout
    assert "4.0x" in result.stdout or "3." in result.stdout  # compression from real file sizes
    assert "[akida-workflows] quantizing" in result.stderr  # progress on long steps
    info = run("info", out)
    assert info.returncode == 0, info.stderr
    assert "fits entirely" in info.stdout and "yes" in info.stdout
    assert "images/s" in info.stdout


def test_convert_unbounded_relu_to_akida1_is_incompatible(files):
    result = run("convert", files / "good.pt", "--samples", files / "calib.npy",
                 "--target", "akida1", "-o", files / "x.fbz")
    assert result.returncode == 3
    assert "nn.ReLU6()" in result.stderr and "Traceback" not in result.stderr
    assert "fixable" in result.stdout  # the compatibility report is printed
    assert "failed: " in result.stdout  # and the stage report shows the failed stage


def test_convert_pickled_module_to_akida1(files):
    out = files / "good_v1.fbz"
    result = run("convert", files / "relu6.pt", "--samples", files / "calib.npy",
                 "--target", "akida1", "--bits", "4", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "AKD1000: 3/3 compute layers in hardware" in result.stdout
    info = run("info", out, "--device", "AKD1000")
    assert info.returncode == 0 and "Akida 1.0" in info.stdout


def test_convert_torch_to_akida2_reports_every_stage(files):
    result = run("convert", files / "good_ts.pt", "--samples", files / "calib.npy",
                 "-o", files / "ts_v2.fbz")
    assert result.returncode == 0, result.stderr
    for stage in ("input (torch)", "float ONNX", "quantized ONNX (8-bit)", "Akida 2.0 8-bit (.fbz)"):
        assert stage in result.stdout


def test_check_ok_and_incompatible(files):
    ok = run("check", files / "good_ts.pt", "--input-shape", "1,16,16", "--target", "akida2")
    assert ok.returncode == 0, ok.stderr
    assert "compatible" in ok.stdout
    bad = run("check", files / "valid.pt", "--input-shape", "1,16,16", "--target", "akida2")
    assert bad.returncode == 3
    assert "fixable" in bad.stdout and "padding" in bad.stdout


@pytest.mark.parametrize("args, message", [
    (["convert", "missing.onnx", "--samples", "calib.npy", "-o", "x.fbz"], "not found"),
    (["convert", "corrupt.onnx", "--samples", "calib.npy", "-o", "x.fbz"], "not a valid ONNX"),
    (["convert", "good.onnx", "--samples", "calib_u8.npy", "-o", "x.fbz"], "must be float"),
    (["convert", "good.onnx", "--samples", "calib_3d.npy", "-o", "x.fbz"], "4-D NCHW"),
    (["convert", "good.onnx", "--samples", "missing.npy", "-o", "x.fbz"], "not found"),
    (["convert", "good.onnx", "--samples", "calib.npy", "-o", "x.onnx"], ".fbz"),
    (["convert", "good.onnx", "--samples", "calib.npy", "--target", "akida2", "--bits", "4",
      "-o", "x.fbz"], "--bits 8"),
    (["convert", "good.onnx", "--samples", "calib.npy", "--target", "akida1", "-o", "x.fbz"],
     "needs the PyTorch model"),
    (["check", "good.onnx", "--input-shape", "1,16,16"], "not ONNX"),
    (["info", "corrupt.onnx"], "not a valid Akida model"),
    (["convert", "good.pt2", "--samples", "calib.npy", "-o", "x.fbz"], "torch.export programs"),
])
def test_usage_errors_exit_2_without_traceback(files, args, message):
    resolved = [str(files / a) if a.endswith((".onnx", ".npy", ".fbz", ".pt2")) else a
                for a in args]
    result = run(*resolved)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_nhwc_samples_are_an_incompatibility_with_hint(files):
    result = run("convert", files / "good.onnx", "--samples", files / "calib_nhwc.npy",
                 "-o", files / "x.fbz")
    assert result.returncode == 3
    assert "to_nchw" in result.stderr and "Traceback" not in result.stderr


def test_bad_input_shape_argument():
    result = run("check", "model.pt", "--input-shape", "1,x,28")
    assert result.returncode == 2 and "comma-separated integers" in result.stderr


def test_debug_shows_traceback(files):
    result = run("--debug", "info", files / "corrupt.onnx")
    assert result.returncode != 0 and "Traceback" in result.stderr
