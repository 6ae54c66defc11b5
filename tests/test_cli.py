"""The akida-workflows command line.

Most tests call its ``main`` in this process, as the console script does, and read
what it wrote to stdout and stderr (Python's and the file descriptors', where native
toolchain logs go); the entry points, Ctrl-C and a user's terminal output are tested
with a real child process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from models import mappable, samples, valid_padding
from zoo import zoo

from akida_workflows.errors import IncompatibleModelError
from akida_workflows.export import export_onnx
from akida_workflows.loading import PICKLE_RISK

TESTS = Path(__file__).resolve().parent
# The test models (tests/models.py, tests/zoo.py) are importable by --model-class.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)}


def run_subprocess(*args, timeout=600, cwd=None):
    """``python -m akida_workflows ARGS`` in a child process (TensorFlow imported anew)."""
    return subprocess.run([sys.executable, "-m", "akida_workflows", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


def run(*args, timeout=None, cwd=None):
    """``akida-workflows ARGS`` in this process: its exit code, stdout and stderr.

    What ``main`` prints through ``sys.stdout``/``sys.stderr`` and what native code
    writes to file descriptors 1 and 2 are both captured (a child process would show
    the user both). ``timeout`` only mirrors :func:`run_subprocess`.
    """
    import contextlib
    import io
    import tempfile
    import traceback

    from akida_workflows.cli import main

    args = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as fd_out, tempfile.TemporaryFile() as fd_err:
        saved = os.dup(1), os.dup(2)
        os.dup2(fd_out.fileno(), 1)
        os.dup2(fd_err.fileno(), 2)
        try:
            if cwd is not None:
                os.chdir(cwd)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(args)
                except SystemExit as exc:  # argparse: --help and usage errors
                    code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
                except Exception:  # escaped main (--debug): what the interpreter prints
                    traceback.print_exc()
                    code = 1
        finally:
            os.chdir(previous)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        fd_out.seek(0)
        fd_err.seek(0)
        native_out = fd_out.read().decode(errors="replace")
        native_err = fd_err.read().decode(errors="replace")
    return subprocess.CompletedProcess(["akida-workflows", *args], code,
                                       out.getvalue() + native_out, err.getvalue() + native_err)


class Evil:
    """Unpickling this runs ``touch TARGET`` (issue 14)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch '{self.target}'",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    good = mappable()
    export_onnx(good, torch.from_numpy(samples(1)), tmp / "good.onnx")
    torch.save(good.state_dict(), tmp / "good_sd.pt")
    torch.jit.save(torch.jit.trace(good, torch.from_numpy(samples(1))), tmp / "good_ts.pt")
    torch.save(valid_padding().state_dict(), tmp / "valid_sd.pt")
    torch.save(zoo()["mappable"], tmp / "relu6.pt")  # a full pickle
    torch.save(zoo()["mappable"].state_dict(), tmp / "relu6_sd.pt")
    np.save(tmp / "calib.npy", samples(32))
    np.save(tmp / "calib_nhwc.npy", np.transpose(samples(32), (0, 2, 3, 1)))
    np.save(tmp / "calib_u8.npy", np.zeros((4, 1, 16, 16), np.uint8))
    np.save(tmp / "calib_3d.npy", samples(4)[:, 0])
    (tmp / "corrupt.onnx").write_bytes(b"\x08\x01garbage")
    torch.export.save(torch.export.export(good, (torch.from_numpy(samples(1)),)), tmp / "good.pt2")
    return tmp


@pytest.mark.parametrize("command", [[], ["check"], ["convert"], ["info"], ["learn"]])
def test_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0
    assert "usage: akida-workflows" in result.stdout


def test_python_dash_m_entry_point():
    result = run_subprocess("convert", "--help")
    assert result.returncode == 0 and "usage: akida-workflows convert" in result.stdout
    assert result.stderr == ""
    result = run_subprocess("info", "missing.fbz")
    assert result.returncode == 2 and "not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_program_skips_the_final_garbage_collection_and_main_in_a_process_does_not(
        monkeypatch):
    """``akida-workflows`` (main() reading sys.argv) freezes the objects Python tracks at
    exit instead of walking TensorFlow's graphs again (2 s of every command's exit);
    main([...]) called by other code leaves its process's exit alone."""
    import gc

    from akida_workflows import _gc
    from akida_workflows.cli import main

    assert gc.get_threshold() == _gc.LONG_RUN_THRESHOLDS  # conftest: every test process
    calls = []
    monkeypatch.setattr(_gc, "skip_final_collection", lambda: calls.append(1))
    assert main(["info", "missing.fbz"]) == 2 and calls == []
    monkeypatch.setattr(sys, "argv", ["akida-workflows", "info", "missing.fbz"])
    assert main() == 2 and calls == [1]
    code = ("import atexit, gc; atexit.register(lambda: print(gc.get_freeze_count() > 0)); "
            "from akida_workflows._gc import skip_final_collection as s; s(); s(); "
            "print(gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert out.stdout.split() == ["0", "True"], out  # frozen at exit, not before


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
    assert "program size (mapped)" in info.stdout and ".fbz file size" in info.stdout
    assert "program" in result.stdout.split("Akida 2.0 8-bit (.fbz)")[0]  # report column


def test_convert_unbounded_relu_to_akida1_is_incompatible(files):
    out = files / "kept.fbz"
    out.write_bytes(b"an earlier conversion")
    result = run("convert", "--model-class", "models:mappable", "--weights", files / "good_sd.pt",
                 "--samples", files / "calib.npy", "--target", "akida1", "-o", out)
    assert result.returncode == 3
    assert "nn.ReLU6()" in result.stderr and "Traceback" not in result.stderr
    assert "fixable" in result.stdout  # the compatibility report is printed
    assert "failed: " in result.stdout  # and the stage report shows the failed stage
    assert out.read_bytes() == b"an earlier conversion"  # a failed run keeps the old .fbz
    assert not list(files.glob(".kept.*")), "no temporary file left behind"


def test_convert_state_dict_to_akida1(files):
    out = files / "good_v1.fbz"
    out.write_bytes(b"an earlier conversion")
    result = run("convert", "--model-class", "zoo:_cnn", "--model-kwargs", "{}",
                 "--weights", files / "relu6_sd.pt", "--samples", files / "calib.npy",
                 "--target", "akida1", "--bits", "4", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "AKD1000: 3/3 compute layers in hardware" in result.stdout
    assert out.read_bytes() != b"an earlier conversion"  # replaced by the complete new file
    info = run("info", out, "--device", "AKD1000")
    assert info.returncode == 0 and "Akida 1.0" in info.stdout
    program = re.search(r"program size \(mapped\)\s*\|?\s*([\d.]+) KiB", info.stdout)
    fbz = re.search(r"\.fbz file size\s*\|?\s*([\d.]+) KiB", info.stdout)
    assert program and fbz, info.stdout
    from akida_workflows.deploy import load, map_report

    # The figures are the mapped program's and the file's own (not the same number).
    expected = map_report(load(out), "AKD1000").program_bytes
    assert expected > 0 and float(program.group(1)) == round(expected / 1024, 1)
    assert float(fbz.group(1)) == round(out.stat().st_size / 1024, 1)


def test_trust_pickle_loads_the_pickled_module(files):
    args = ["convert", files / "relu6.pt", "--samples", files / "calib_3d.npy", "--target",
            "akida1", "-o", files / "x.fbz"]
    refused = run(*args)
    assert refused.returncode == 2 and "full pickle" in refused.stderr
    # Trusted, the model loads (nn.Sequential of torch layers) and the run goes on to the
    # next input, whose error (3-D samples) it then reports.
    trusted = run(*args[:2], "--trust-pickle", *args[2:])
    assert trusted.returncode == 2 and "4-D NCHW" in trusted.stderr, trusted.stderr
    assert "pickle" not in trusted.stderr


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
    bad = run("check", "--model-class", "models:valid_padding", "--weights",
              files / "valid_sd.pt", "--input-shape", "1,16,16", "--target", "akida2")
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


# ------------------------------------------------------------------ safe loading (issue 14)


@pytest.mark.parametrize("command", [["check", "model.pt", "--input-shape", "1,28,28"],
                                     ["convert", "model.pt", "--samples", "calib.npy",
                                      "-o", "out.fbz"]])
def test_pickle_that_runs_code_is_refused(tmp_path, command):
    """The attack of issue 14: checking a stranger's model.pt must not run its code."""
    torch.save(Evil(tmp_path / "PWNED"), tmp_path / "model.pt")
    np.save(tmp_path / "calib.npy", samples(4))
    result = run(*command, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert not (tmp_path / "PWNED").exists()
    assert "this file is a full pickle" in result.stderr and "posix.system" in result.stderr
    assert "pass --trust-pickle only if you trust its author" in result.stderr.replace(
        "Pass", "pass").replace(" (API: trust_pickle=True)", "")
    assert PICKLE_RISK in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.fbz").exists()


def test_torchscript_is_refused_up_front_for_akida1(files):
    result = run("check", files / "good_ts.pt", "--input-shape", "1,16,16", "--target", "akida1")
    assert result.returncode == 2
    assert "TorchScript cannot take the Akida 1.0 path" in result.stderr
    assert "--model-class" in result.stderr and "cannot trace" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["check", "--input-shape", "1,16,16"], "give a model file"),
    (["check", "--weights", "good_sd.pt", "--input-shape", "1,16,16"], "name the class"),
    (["check", "good_ts.pt", "--weights", "good_sd.pt", "--input-shape", "1,16,16"],
     "give the model file once"),
    (["check", "good_ts.pt", "--model-kwargs", "{}", "--input-shape", "1,16,16"],
     "--model-kwargs needs --model-class"),
    (["check", "--model-class", "models:mappable", "--model-kwargs", "[1]", "--weights",
      "good_sd.pt", "--input-shape", "1,16,16"], "expected a JSON object"),
    (["check", "--model-class", "models:mappable", "--model-kwargs", "{x", "--weights",
      "good_sd.pt", "--input-shape", "1,16,16"], "not valid JSON"),
    (["check", "good_sd.pt", "--input-shape", "1,16,16"], "holds a state dict"),
    (["check", "--model-class", "models:valid_padding", "--weights", "good_sd.pt",
      "--input-shape", "1,16,16"], "shape mismatch"),
    (["check", "--model-class", "nowhere_14:Net", "--weights", "good_sd.pt",
      "--input-shape", "1,16,16"], "on PYTHONPATH"),
    (["convert", "--model-class", "models:mappable", "--weights", "good.onnx",
      "--samples", "calib.npy", "-o", "x.fbz"], "is an ONNX model, not a state dict"),
])
def test_model_argument_errors(files, args, message):
    resolved = [str(files / a) if a.endswith((".onnx", ".npy", ".fbz", ".pt")) else a
                for a in args]
    result = run(*resolved, timeout=300)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["check", "convert"])
def test_help_documents_the_safe_model_forms(command):
    text = " ".join(run(command, "--help").stdout.split())
    for form in ("model.onnx", "TorchScript", "--model-class", "--model-kwargs", "--weights",
                 "weights_only=True", "--trust-pickle", PICKLE_RISK):
        assert form in text


# Ctrl-C pressed in the middle of a stage: the child is the real command line, with one
# toolchain call wrapped to deliver SIGINT to its own process while it runs (a real signal,
# handled by Python as a user's Ctrl-C is; sending it from outside raced with the small
# conversion, which can finish between reading "quantizing" and the signal).
_PRESS_CTRL_C = """
import signal, sys
# Ctrl-C as in a terminal: a child of a background job inherits SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
import akida, akida_workflows.convert as convert, akida_workflows.deploy as deploy
from akida_workflows.cli import main

def pressed(owner, name):
    original = getattr(owner, name)
    def call(*args, **kwargs):
        result = original(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return result
    setattr(owner, name, call)

owner, name = {"quantize": (convert, "quantize_onnx"), "map": (deploy, "map_report"),
               "save": (akida.Model, "save")}[sys.argv[1]]
pressed(owner, name)
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("stage", ["quantize", "map", "save"])
def test_interrupted_convert_leaves_no_fbz(files, tmp_path, stage):
    out, work = tmp_path / "out" / "out.fbz", tmp_path / "tmp"
    out.parent.mkdir()
    work.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", _PRESS_CTRL_C, stage, "convert", str(files / "good.onnx"),
         "--samples", str(files / "calib.npy"), "-o", str(out)],
        capture_output=True, text=True, timeout=600, env={**ENV, "TMPDIR": str(work)})
    assert result.returncode == 130, (result.stdout, result.stderr)
    assert "wrote" not in result.stdout and "Traceback" not in result.stderr
    # neither out.fbz nor its hidden .partial.fbz, nor the work folder of the conversion
    assert list(out.parent.iterdir()) == [] and list(work.iterdir()) == []


# ------------------------------------------------ reports that stay true on user models

def _write_model(tmp_path, model, name="m.pt"):
    path = tmp_path / name
    torch.save(model, path)
    return path


def test_check_reports_crashing_models_with_exit_3(tmp_path):
    dilated = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3, dilation=2, padding="same"),
                                  torch.nn.ReLU(), torch.nn.Flatten(),
                                  torch.nn.Linear(8 * 64, 2)).eval()
    # a child process: what a user's terminal shows, toolchain log lines included
    result = run_subprocess("check", _write_model(tmp_path, dilated), "--trust-pickle",
                            "--input-shape", "4,64")
    assert result.returncode == 3, result.stderr
    # lowered to 2-D (5 rows), its Flatten → Linear exceeds the Dense input limit; the
    # report names that and the 4 input channels in one run, each with its fix
    assert "Linear with 2560 inputs once lowered" in result.stdout, result.stdout
    assert "1 or 3 channels, this one 4" in result.stdout
    noise = ("onnxruntime", "graph(%", "Torch IR graph", "Traceback")
    assert not any(n in result.stderr + result.stdout for n in noise), result.stderr


def test_check_and_convert_two_input_model_exit_3(tmp_path):
    from zoo import two_inputs

    path = _write_model(tmp_path, two_inputs())
    result = run("check", path, "--trust-pickle", "--input-shape", "1,16,16")
    assert result.returncode == 3, result.stderr
    assert "takes 2 inputs" in result.stdout
    np.save(tmp_path / "x.npy", samples(4))
    result = run("convert", path, "--trust-pickle", "--samples", tmp_path / "x.npy",
                 "-o", tmp_path / "x.fbz")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "takes 2 inputs" in result.stdout


def test_check_wrong_input_shape_is_a_usage_error(files):
    result = run("check", files / "good_ts.pt", "--input-shape", "3,16,16")
    assert result.returncode == 2
    assert "does not run on an input of shape" in result.stderr and "--input-shape" in result.stderr


def test_mlp_converts_for_akida2_and_is_refused_for_akida1_with_the_reason(tmp_path):
    from zoo import zoo as build_zoo

    export_onnx(build_zoo()["mlp"], torch.from_numpy(samples(1)), tmp_path / "mlp.onnx")
    np.save(tmp_path / "x.npy", samples(8))
    result = run("convert", tmp_path / "mlp.onnx", "--samples", tmp_path / "x.npy",
                 "-o", tmp_path / "mlp.fbz")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlp.fbz").is_file()
    torch.save(build_zoo()["mlp"].state_dict(), tmp_path / "mlp.pt")
    result = run("convert", "--model-class", "zoo:MLP", "--weights", tmp_path / "mlp.pt",
                 "--samples", tmp_path / "x.npy",
                 "--target", "akida1", "-o", tmp_path / "mlp1.fbz")
    assert result.returncode == 3, result.stderr
    assert "at most 4 bits" in result.stderr + result.stdout
    assert not (tmp_path / "mlp1.fbz").exists()
    # The last line names the user's module in the report's words, not QuantizeML's text
    # about the bridge's Keras layer ("first layer (flatten_0) was one of ...").
    last = result.stderr.strip().splitlines()[-1]
    assert "incompatible model: layers.1 (Linear): the model starts with a Linear layer" in last, last
    assert "Fix: start with a convolution" in last and "flatten_0" not in last, last


def test_convert_says_not_measured_and_measures_with_labels(files):
    result = run("convert", files / "good.onnx", "--samples", files / "calib.npy",
                 "-o", files / "nm.fbz")
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("wrote")[0]
    assert "not measured" in table
    np.save(files / "labels.npy", np.arange(32) % 10)
    result = run("convert", files / "good.onnx", "--samples", files / "calib.npy",
                 "--labels", files / "labels.npy", "-o", files / "lab.fbz")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "quantized ONNX (8-bit)" in line
            or "Akida 2.0 8-bit (.fbz)" in line]
    assert rows and all(" %" in line for line in rows), result.stdout


def test_labels_must_match_the_samples(files):
    np.save(files / "labels_bad.npy", np.arange(5))
    result = run("convert", files / "good.onnx", "--samples", files / "calib.npy",
                 "--labels", files / "labels_bad.npy", "-o", files / "x.fbz")
    assert result.returncode == 2 and "5 labels for 32 samples" in result.stderr


def test_stage_report_missing_figures():
    from akida_workflows.evaluate import StageReport

    report = StageReport("m", missing="not measured")
    report.add("float", size_bytes=100, seconds=1.0)
    report.add("Akida", status="failed: boom")
    (ok, failed) = report.records()
    assert ok["accuracy"] == ok["eval time"] == "not measured" and ok["build time"] == "1.00 s"
    assert failed["accuracy"] == "-"  # a failed stage has no figures, it is not "not measured"
    assert StageReport("m").records() == []


ZOO_NAMES = sorted(zoo())
_AGREEMENT: list = []  # one record per zoo model and target (AW_ZOO_RECORD=path dumps them)


@pytest.fixture(scope="module", autouse=True)
def _record_zoo_agreement():
    yield
    path = os.environ.get("AW_ZOO_RECORD")
    if path and _AGREEMENT:
        import json

        Path(path).write_text(json.dumps(_AGREEMENT, indent=1))


def _mapper_share(akida_model, target) -> tuple[int, int]:
    """Compute layers in hardware sequences / all, read from ``map(device)`` directly."""
    import akida
    from zoo import DEVICES

    from akida_workflows.deploy import NON_COMPUTE_TYPES

    mapped = akida.Model(layers=list(akida_model.layers))
    mapped.map(getattr(akida, DEVICES[target])(), hw_only=False)
    in_hw = {layer.name for seq in mapped.sequences if "Hardware" in str(seq.backend)
             for p in seq.passes for layer in p.layers}
    compute = [layer.name for layer in mapped.layers
               if str(layer.parameters.layer_type).split(".")[-1] not in NON_COMPUTE_TYPES]
    return sum(n in in_hw for n in compute), len(compute)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["akida2", "akida1"])
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_check_convert_info_agree_with_hw_only_mapping(name, target, tmp_path, capsys,
                                                       monkeypatch):
    """check, convert and info on every zoo model agree with map(device, hw_only=True).

    One conversion per model and target for the whole session (``zoo_cli_convert``: the
    CLI's own ``convert``, whose .fbz the judge maps), one check (``zoo_report``).
    """
    import re

    from zoo import REPORT_SECONDS, hw_only, input_shape, zoo_cli_convert, zoo_report

    from akida_workflows import compat
    from akida_workflows.cli import main

    start = time.perf_counter()
    run = zoo_cli_convert(name, target)
    akida_model = run.akida_model
    judge = akida_model is not None and hw_only(akida_model, target)[0]
    record = {"model": name, "target": target, "convert_exit": run.code,
              "convert_seconds": round(run.seconds, 1), "hw_only": judge}
    # check: exit 0 exactly when map(hw_only=True) succeeds; the report says the same.
    try:
        report = zoo_report(name, target)
    except IncompatibleModelError as exc:  # refused up front (e.g. a lowered 1-D model's limits)
        report, refusal = None, str(exc)
    record["check_seconds"] = round(REPORT_SECONDS[name, target], 1)
    library_noise = capsys.readouterr()  # what check_compatibility printed (library use)
    assert "Traceback" not in library_noise.err + library_noise.out, library_noise.err[-2000:]
    monkeypatch.setattr(compat, "check_compatibility", lambda *a, **k: zoo_report(name, target))
    path = _write_model(tmp_path, zoo()[name])
    code = main(["check", str(path), "--trust-pickle", "--input-shape",
                 ",".join(map(str, input_shape(name))), "--target", target])
    out = capsys.readouterr()
    assert code == (0 if judge else 3), out.out + out.err
    assert "Traceback" not in out.err
    if report is None:
        assert not judge and "Fix:" in refusal and "Fix:" in out.err
        record.update(check="refused", complete=True, check_share=None)
    else:
        assert report.ok == judge, report
        if judge:
            assert report.hw_fraction == 1.0 and report.complete, report
        record.update(check="ok" if report.ok else "issues", complete=report.complete,
                      check_share=report.hw_fraction,
                      issues=len(report.issues), not_reached=sum(
                          r.status == "not reached" for r in report.rows))
    # convert: exit 3 with the report (or 2 with the reason) when it cannot convert.
    noise = ("Traceback", "onnxruntime", "graph(%", "Torch IR graph")
    assert not any(n in run.err + run.out for n in noise), run.err
    if akida_model is None:
        assert run.code in (2, 3) and not judge, run.err
        record["elapsed"] = round(time.perf_counter() - start, 1)
        _AGREEMENT.append(record)
        return
    assert run.code == 0, run.err
    # The printed share is the mapper's own: layers in its hardware sequences.
    hw, total = map(int, re.search(r"(\d+)/(\d+) compute layers in hardware", run.out).groups())
    assert (hw, total) == _mapper_share(akida_model, target), run.out
    assert (hw == total) == judge, run.out
    assert ("map(hw_only=True) fails" in run.err) == (not judge)
    if judge and report is not None:  # check's NP counts are the ones convert's mapping used
        used = re.search(r"NPs used: ([^;\n]*)", run.out).group(1).strip()
        assert f"(NPs: {used})" in report.summary_line(), (report.summary_line(), used)
    code = main(["info", str(run.fbz)])
    out = capsys.readouterr()
    assert code == 0, out.err
    fits = re.search(r"fits entirely\s+(yes|no)", out.out).group(1)
    assert (fits == "yes") == judge, out.out
    assert re.search(rf"compute layers in hardware\s+{hw}/{total}\b", out.out), out.out
    record.update(share=f"{hw}/{total}", elapsed=round(time.perf_counter() - start, 1))
    _AGREEMENT.append(record)


def test_a_linear_first_model_on_flat_vectors_checks_and_converts(tmp_path):
    """Whatever input shape check takes, convert takes matching samples: a Dense-first
    model on (N, F) feature vectors (tabular/sensor data) passed check --input-shape 40
    and convert refused its (N, 40) samples ("must be a 4-D NCHW batch")."""
    import akida

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 32), torch.nn.ReLU6(),
                                torch.nn.Linear(32, 4)).eval()
    path = _write_model(tmp_path, model)
    x = np.random.default_rng(0).uniform(-1, 1, (16, 40)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    check = run("check", path, "--trust-pickle", "--input-shape", "40", "--target", "akida2")
    assert check.returncode == 0, check.stdout + check.stderr
    out = tmp_path / "m.fbz"
    result = run("convert", path, "--trust-pickle", "--samples", tmp_path / "x.npy",
                 "--target", "akida2", "-o", out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2/2 compute layers in hardware (100 %)" in result.stdout
    akida_model = akida.Model(str(out))
    assert tuple(akida_model.input_shape) == (1, 1, 40)
    from akida_workflows.evaluate import predict

    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(predict(akida_model, x) - ref).max() < 0.1 * np.abs(ref).max()
    # Akida 1.0 refuses a Linear input layer: exit 3 with the rule's row, not a usage error
    v1 = run("convert", path, "--trust-pickle", "--samples", tmp_path / "x.npy",
             "--target", "akida1", "-o", tmp_path / "v1.fbz")
    assert v1.returncode == 3 and "input layer must be a convolution" in v1.stdout + v1.stderr
