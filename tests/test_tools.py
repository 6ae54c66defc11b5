"""The built-site checker and the golden-notebook tooling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))  # the site's Sphinx extension, as conf.py has it

import akida_site  # noqa: E402
import check_site  # noqa: E402
import durations  # noqa: E402
import host_speed  # noqa: E402
import notebooks  # noqa: E402

GOOD_PAGE = """<html><body>
<img alt="fig" class="sphx-glr-single-img" src="../_images/fig.png"/>
<p><strong>Total running time of the script:</strong> (0 minutes 52.550 seconds)</p>
<div class="sphx-glr-download sphx-glr-download-jupyter docutils container">
<p><a class="reference download internal" download="" href="../_downloads/a/ex.ipynb">nb</a></p>
</div>
<div class="sphx-glr-download sphx-glr-download-python docutils container">
<p><a class="reference download internal" download="" href="../_downloads/b/ex.py">py</a></p>
</div></body></html>"""


def _site(tmp_path, page=GOOD_PAGE, files=("_images/fig.png", "_downloads/a/ex.ipynb",
                                           "_downloads/b/ex.py")):
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"x")
    page_path = tmp_path / "auto_examples" / "ex.html"
    page_path.parent.mkdir(parents=True, exist_ok=True)
    page_path.write_text(page)
    return page_path


def test_complete_page_passes(tmp_path):
    assert check_site.check_page(_site(tmp_path)) == []


def test_page_that_did_not_run(tmp_path):
    page = _site(tmp_path, GOOD_PAGE.replace("0 minutes 52.550", "0 minutes 0.000"))
    assert any("did not run" in p for p in check_site.check_page(page))


def test_page_without_figures(tmp_path):
    page = _site(tmp_path, files=("_downloads/a/ex.ipynb", "_downloads/b/ex.py"))
    assert any("0 figure(s)" in p for p in check_site.check_page(page))


def test_page_without_download_links(tmp_path):
    page = _site(tmp_path, GOOD_PAGE.replace("sphx-glr-download-jupyter", "other"))
    problems = check_site.check_page(page)
    assert problems == ["ex.html: no .ipynb download link"]


def test_page_with_a_missing_download_file(tmp_path):
    page = _site(tmp_path, files=("_images/fig.png", "_downloads/b/ex.py"))
    assert any(".ipynb download" in p and "missing" in p for p in check_site.check_page(page))


def test_page_with_traceback(tmp_path):
    page = _site(tmp_path, GOOD_PAGE.replace("<p>", "<pre>Traceback (most recent call last)</pre><p>", 1))
    assert any("traceback" in p for p in check_site.check_page(page))


def test_junit(tmp_path):
    junit = tmp_path / "j.xml"
    junit.write_text('<testsuite><testcase name="a"/><testcase name="b">'
                     '<failure message="x"/></testcase></testsuite>')
    problems = check_site.check_junit(junit, expected=3)
    assert any("2 example(s) ran, expected 3" in p for p in problems)
    assert any("example b failed" in p for p in problems)


def test_notebooks_match_the_examples():
    pytest.importorskip("sphinx_gallery")
    nb = notebooks.to_notebook(ROOT / "examples" / "plot_0_mnist_pytorch_to_akida.py")
    cells = notebooks.code_cells(nb)
    assert cells[0] == "%matplotlib inline"
    assert any("assert ready_map.fully_mapped" in c for c in cells)


def test_golden_notebooks_are_in_sync():
    pytest.importorskip("sphinx_gallery")
    assert notebooks.check() == [], "run `nox -s regenerate`"


def test_golden_notebooks_compare_their_deterministic_cells():
    import nbformat

    for path in sorted(notebooks.GOLDEN.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        compared = [c for c in code if "nbval-ignore-output" not in c.metadata.get("tags", [])]
        ignored = [c for c in code if c not in compared]
        # Only training cells are ignored, most cells are compared, and all have run.
        assert all("train(" in c.source or "fine_tune(" in c.source for c in ignored)
        assert len(compared) > len(ignored)
        assert all(c.execution_count for c in code)
        outputs = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                          for c in compared for o in c.outputs)
        assert "compute layers in hardware" in outputs or "every layer maps onto" in outputs


def _noxfile(monkeypatch):
    """noxfile.py as a module; nox itself (not in the test environment) is stubbed."""
    import importlib.util
    import types

    stub = types.ModuleType("nox")
    stub.options = types.SimpleNamespace()
    stub.Session = object
    stub.session = lambda *a, **k: (a[0] if a and callable(a[0]) else (lambda f: f))
    monkeypatch.setitem(sys.modules, "nox", stub)
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sessions_pin_threads_and_instruction_sets(monkeypatch):
    """The golden notebooks compare trained figures: every run must take one code path."""
    noxfile = _noxfile(monkeypatch)
    monkeypatch.setattr(noxfile.platform, "machine", lambda: "x86_64")
    env = noxfile.reproducible_env()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        assert env[name] == "1", name
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"  # PyTorch's vector kernels
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2"  # torch convolutions, TensorFlow matmuls
    assert env["OPENBLAS_CORETYPE"] == "Haswell"  # numpy
    monkeypatch.setattr(noxfile.platform, "machine", lambda: "aarch64")
    assert "ATEN_CPU_CAPABILITY" not in noxfile.reproducible_env()  # x86 names only


def test_pinned_environment_reaches_the_libraries(monkeypatch):
    """torch reports the AVX2 path and one thread under the sessions' environment."""
    import os
    import subprocess

    env = dict(os.environ, **_noxfile(monkeypatch).reproducible_env())
    code = ("import torch; print(torch.backends.cpu.get_cpu_capability(), "
            "torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    if os.uname().machine == "x86_64":
        assert out.stdout.split() == ["AVX2", "1"]
    else:
        assert out.stdout.split()[-1] == "1"


def test_sessions_keep_keras_3_out_of_the_stack(monkeypatch):
    """The sessions' environment imports the whole stack without Keras 3 (TensorFlow's
    `tf.keras` is tf-keras), and QuantizeML still builds its quantized layers."""
    import os
    import subprocess

    env = dict(os.environ, **_noxfile(monkeypatch).reproducible_env())
    code = ("import sys, akida, cnn2snn, quantizeml, tensorflow as tf, tf_keras; "
            "from quantizeml.layers import QuantizedConv2D; "
            "print('keras' in sys.modules, tf.keras.Model is tf_keras.Model)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_ci_script_prints_each_phase_time():
    script = (ROOT / ".ci" / "run").read_text()
    for phase in ("nox -s gallery", "nox -s lint", "nox -s tests",
                  "apt: dataset-fashion-mnist"):
        assert f'phase "{phase}"' in script
    assert "trap summary EXIT" in script
    # the host's speed at both ends, so that a slow run on a slow host can be told apart
    assert script.count("$(host_speed)") == 2 and "tools/host_speed.py" in script


def test_host_speed_compares_with_the_reference():
    half = {name: 2 * s for name, s in host_speed.REFERENCE.items()}
    assert host_speed.speed(half) == pytest.approx(0.5)
    assert host_speed.speed(dict(host_speed.REFERENCE)) == pytest.approx(1.0)
    # without numpy (a bare interpreter) the Python part alone
    assert host_speed.speed({"python": host_speed.REFERENCE["python"] / 2}) == pytest.approx(2.0)
    seconds = host_speed.measure(repeats=1)
    assert set(seconds) == {"python", "numpy"} and all(0 < s < 30 for s in seconds.values())


# --- The gallery runs its examples longest first ----------------------------------------


def test_the_gallery_runs_its_examples_longest_first(monkeypatch):
    seconds = {"plot_0_a.py": 74, "plot_1_b.py": 31, "plot_6_c.py": 117}
    monkeypatch.setattr(akida_site, "example_seconds", lambda f: seconds.get(f, 0))
    split = akida_site.longest_first(lambda listdir, src, conf: (["plot_9_serial.py"], listdir))
    assert split(["plot_0_a.py", "plot_1_b.py", "plot_6_c.py", "plot_7_d.py"], None, {}) == (
        ["plot_9_serial.py"], ["plot_6_c.py", "plot_0_a.py", "plot_1_b.py", "plot_7_d.py"])
    # the real recorded seconds reach the examples' names
    monkeypatch.undo()
    assert akida_site.example_seconds("plot_6_depthwise_separable.py") > 60
    assert set(akida_site.EXAMPLE_SECONDS) == {p.name for p in (ROOT / "examples").glob("plot_*.py")}
    from sphinx_gallery import gen_rst

    akida_site.patch_execution_order()
    akida_site.patch_execution_order()  # idempotent: wrapped once
    assert gen_rst._split_parallel.wrapped.__name__ == "_split_parallel"


def test_gallery_workers_are_kept_and_start_each_example_with_a_fresh_keras_session(
        monkeypatch):
    """A parallel gallery worker is not replaced after an example (loky's 300 MB leak
    check replaced them after most examples), and an example run after another in the
    same worker sees tf-keras' names as a fresh process (and its notebook) does."""
    import tf_keras
    from joblib.externals.loky import process_executor

    monkeypatch.setattr(process_executor, "_MAX_MEMORY_LEAK_SIZE", int(3e8))
    tf_keras.layers.Dense(2)  # an earlier example's layer: the next one is named dense_<n>
    assert tf_keras.layers.Dense(2).name != "dense"
    akida_site.keep_gallery_workers(None, "plot_0_a.py", "before")
    assert process_executor._MAX_MEMORY_LEAK_SIZE == akida_site.WORKER_GROWTH_LIMIT >= 2**32
    akida_site.fresh_keras_session(None, "plot_0_a.py", "before")
    assert tf_keras.layers.Dense(2).name == "dense"
    conf = _gallery_conf()
    assert {"akida_site.keep_gallery_workers", "akida_site.fresh_keras_session",
            "akida_site.lean_gallery_gc"} <= set(conf["reset_modules"])
    assert conf["reset_modules_order"] == "before"  # before every example
    monkeypatch.delattr(process_executor, "_MAX_MEMORY_LEAK_SIZE")
    with pytest.raises(Exception, match="_MAX_MEMORY_LEAK_SIZE"):
        akida_site.keep_gallery_workers()


def _gallery_conf() -> dict:
    """``sphinx_gallery_conf`` as ``conf.py`` writes it (its literal entries; read, not run)."""
    import ast

    tree = ast.parse((ROOT / "conf.py").read_text())
    node = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", "") == "sphinx_gallery_conf")
    return {ast.literal_eval(k): ast.literal_eval(v) for k, v in zip(node.keys, node.values)
            if isinstance(v, (ast.Constant, ast.Tuple, ast.List))
            and all(isinstance(e, ast.Constant) for e in getattr(v, "elts", []))}


def test_gallery_workers_collect_garbage_less_often_and_not_at_exit():
    """lean_gallery_gc, run in a worker before every example, sets the long-run
    thresholds and skips the final collection at the worker's exit (a child process:
    the thresholds and the exit are the process's own)."""
    code = ("import atexit, gc, sys; sys.path.insert(0, 'docs/_ext'); "
            "atexit.register(lambda: print('frozen at exit', gc.get_freeze_count() > 0)); "
            "import akida_site; akida_site.lean_gallery_gc(None, 'plot_0_a.py', 'before'); "
            "akida_site.lean_gallery_gc(None, 'plot_1_b.py', 'before'); print(gc.get_threshold())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["(10000, 10, 100)", "frozen at exit True"], out.stdout


# --- pytest hands the longest files out first ---------------------------------------------


def test_the_longest_test_files_and_notebooks_are_handed_out_first(monkeypatch):
    """conftest's order reaches pytest-xdist: with its default (most tests first) the
    golden notebooks, a few cells of minutes each, started last (tests/conftest.py)."""
    from types import SimpleNamespace

    import conftest

    assert conftest.file_seconds(ROOT / "tests" / "notebooks" / "plot_6_depthwise_separable.ipynb") > 60
    assert conftest.file_seconds("tests/test_rules.py") < conftest.file_seconds("test_cli.py")
    listed = set(conftest.FILE_SECONDS)
    notebooks = {p.name for p in (ROOT / "tests" / "notebooks").glob("*.ipynb")}
    present = {p.name for p in (ROOT / "tests").glob("test_*.py")} | notebooks
    assert listed <= present, listed - present  # no figure for a file that is gone
    assert notebooks <= listed, notebooks - listed  # the long files are all listed
    # The file with more tests but fewer recorded seconds comes after; each file keeps
    # its own order; an unlisted file goes last.
    monkeypatch.setattr(conftest, "FILE_SECONDS", {"test_slow.py": 100, "test_many.py": 1})
    items = [SimpleNamespace(path=Path(f"/r/tests/{name}"), i=i) for i, name in enumerate(
        ["test_many.py"] * 3 + ["test_new.py"] + ["test_slow.py"] * 2)]
    conftest.pytest_collection_modifyitems(None, None, items)
    assert [(item.path.name, item.i) for item in items] == [
        ("test_slow.py", 4), ("test_slow.py", 5), ("test_many.py", 0), ("test_many.py", 1),
        ("test_many.py", 2), ("test_new.py", 3)]
    # and pytest-xdist is told to keep that order (in this very run too, under -n)
    config = SimpleNamespace(option=SimpleNamespace(loadscopereorder=True), workerinput={},
                             getoption=lambda name, default=None: False)
    conftest.pytest_configure(config)
    assert config.option.loadscopereorder is False


# --- The recorded seconds are read from a run (tools/durations.py) ------------------------

_JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_cli" name="test_a" time="12.5"/>
<testcase classname="tests.test_cli" name="test_b[x-1]" time="0.5"/>
<testcase classname="tests.test_keras_bridge.TestHeads" name="test_c" time="4.0"/>
<testcase classname="tests.notebooks.plot_5_ecg_signals.ipynb" name="Cell 10" time="64.7"/>
<testcase classname="tests.notebooks.plot_5_ecg_signals.ipynb" name="Cell 0" time="1.3"/>
<testcase classname="conftest" name="not_a_test_file" time="99"/>
</testsuite></testsuites>"""

_SG_TIMES = """
   * - :ref:`sphx_glr_auto_examples_plot_6_depthwise_separable.py` (``../examples/plot_6_depthwise_separable.py``)
     - 02:02.180
     - 0.0
   * - :ref:`sphx_glr_auto_examples_plot_3_compatibility.py` (``../examples/plot_3_compatibility.py``)
     - 00:17.819
     - 0.0
"""


def test_durations_are_recorded_from_a_run(tmp_path):
    junit, sg_times = tmp_path / "junit.xml", tmp_path / "sg_execution_times.rst"
    junit.write_text(_JUNIT)
    sg_times.write_text(_SG_TIMES)
    assert durations.seconds_per_test_file(junit) == pytest.approx({
        "test_cli.py": 13.0, "test_keras_bridge.py": 4.0, "plot_5_ecg_signals.ipynb": 66.0})
    assert durations.example_seconds(sg_times) == pytest.approx({
        "plot_6_depthwise_separable.py": 122.18, "plot_3_compatibility.py": 17.819})
    record = tmp_path / "durations.json"
    record.write_text(json.dumps({"gallery": {"plot_3_compatibility.py": 18},
                                  "tests": {"test_gone.py": 3, "test_cli.py": 13}}))
    changes = durations.record(junit, sg_times, record)
    assert changes == ["gallery: plot_6_depthwise_separable.py None -> 122",
                       "tests: plot_5_ecg_signals.ipynb None -> 66",
                       "tests: test_gone.py 3 -> None",
                       "tests: test_keras_bridge.py None -> 4"]
    kept = durations.load(record)
    assert kept["gallery"] == {"plot_3_compatibility.py": 18, "plot_6_depthwise_separable.py": 122}
    assert kept["tests"] == {"plot_5_ecg_signals.ipynb": 66, "test_cli.py": 13,
                             "test_keras_bridge.py": 4}
    # what the gallery and pytest read is this record
    assert durations.load()["tests"] == __import__("conftest").FILE_SECONDS
    empty = tmp_path / "empty.rst"
    empty.write_text("no table")
    with pytest.raises(ValueError, match="no example time"):
        durations.example_seconds(empty)
    assert durations.main(["record", "--junit", str(tmp_path / "missing.xml"),
                           "--gallery", str(sg_times)]) == 1


def test_cpu_profile_attributes_each_sample_to_its_innermost_kind_of_work(tmp_path, monkeypatch):
    """benchmarks/cpu_profile.py: py-spy's raw stacks summed by kind of work and process."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import cpu_profile

    worker = 'process 11:"python -u -c import sys;exec(eval(sys.stdin.readline()))"'
    kernel = 'process 12:"python -m ipykernel_launcher -f /tmp/k.json"'
    quantize = ("quantize (quantizeml/models/quantize.py:540)",
                "quantize_keras (quantizeml/models/quantize.py:500)",
                "from_config (tf_keras/src/engine/training.py:3295)")
    lines = [
        # a test that quantizes: the innermost matching frame is QuantizeML's
        ";".join([worker, "thread (0x1)", "pytest_pyfunc_call (_pytest/python.py:159)",
                  "test_codes (test_calibration.py:12)", *quantize]) + " 30",
        # the Akida simulator's native predict lands on our predict frame
        ";".join([kernel, "thread (0x2)", "<module> (ipykernel_launcher.py:18)",
                  "evaluate (akida_workflows/evaluate.py:314)",
                  "predict (akida_workflows/evaluate.py:163)"]) + " 10",
        # an import inside QuantizeML's quantize is an import
        ";".join([worker, "thread (0x1)", *quantize, "_find_and_load (<frozen importlib._bootstrap>:1176)",
                  "<module> (scipy/sparse/_base.py:1)"]) + " 4",
        # the test's own lines; then a line broken by a frame name (skipped)
        ";".join([worker, "thread (0x1)", "pytest_pyfunc_call (_pytest/python.py:159)",
                  "test_codes (test_calibration.py:14)"]) + " 6",
        "half a frame name without a count",
    ]
    result = cpu_profile.summarize(lines, rate=2.0)
    assert result["total"] == 25.0
    assert result["categories"] == {"QuantizeML: Keras quantization": 15.0, "Akida simulator": 5.0,
                                    "imports": 2.0, "test code (tests/)": 3.0}
    assert result["processes"] == {"pytest workers": 20.0, "notebook kernels (nbval)": 5.0}
    assert result["leaves"]["from_config (tf_keras/src/engine/training.py)"] == 15.0
    raw = tmp_path / "phase.raw"
    raw.write_text("\n".join(lines) + "\n")
    text = cpu_profile.report(raw, rate=2.0)
    assert "QuantizeML: Keras quantization     15    60 %" in text, text
