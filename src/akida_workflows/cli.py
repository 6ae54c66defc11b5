"""``akida-workflows``: check, convert, inspect models and learn on them from the command line.

Exit codes: 0 success, 2 usage error (bad arguments, missing, unreadable or
unsafe files, bad samples), 3 incompatible model (the report is printed), 1
anything else. Errors print one line without a traceback unless ``--debug`` is
given. Model files are loaded by :func:`akida_workflows.loading.load_model`,
which runs none of their author's Python code unless ``--trust-pickle`` is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .loading import PICKLE_RISK

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INCOMPATIBLE = 0, 1, 2, 3


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps the description, keeps the epilog's layout (the table of model forms)."""

    def _fill_text(self, text, width, indent):
        if text.startswith("ways to give"):
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


class UsageError(Exception):
    """Bad command-line input: reported with exit code 2."""


def _progress(message: str) -> None:
    print(f"[akida-workflows] {message}", file=sys.stderr, flush=True)


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 1,28,28, got {text!r}") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"dimensions must be positive, got {text!r}")
    return shape


def load_model(path: Path | None, *, model_class: str | None = None,
               model_kwargs: dict | None = None, weights: Path | None = None,
               trust_pickle: bool = False, target: str | None = None):
    """``("onnx", ModelProto)`` or ``("torch", module)`` from the command's model arguments.

    A thin wrapper of :func:`akida_workflows.loading.load_model` (safe by default:
    ONNX, TorchScript, or a state dict with ``model_class``; full pickles only with
    ``trust_pickle``) whose errors become usage errors (exit 2). TorchScript is
    refused up front for ``target="akida1"``: that path rebuilds the model layer by
    layer from ``nn.Module`` layers traced with torch.fx, which compiled
    TorchScript code does not have.
    """
    import torch

    from .errors import ModelFileError
    from .loading import load_model as load

    try:
        model = load(path, model_class=model_class, model_kwargs=model_kwargs,
                     weights=weights, trust_pickle=trust_pickle)
    except ModelFileError as exc:
        raise UsageError(str(exc)) from None
    if isinstance(model, torch.nn.Module):
        if target == "akida1" and isinstance(model, torch.jit.ScriptModule):
            raise UsageError(
                f"{path or weights}: TorchScript cannot take the Akida 1.0 path: it rebuilds the "
                "model in tf-keras from its nn.Module layers traced with torch.fx, and a "
                "TorchScript file holds compiled code instead. Save model.state_dict() and "
                "give it with --model-class MODULE:CLASS --weights FILE, or use --target "
                "akida2 (through ONNX).")
        return "torch", model
    return "onnx", model


def _load_model_args(args):
    """(kind, model) from the parsed model arguments; sets ``args.model`` to the file."""
    if args.model is not None and args.weights is not None and args.model != args.weights:
        raise UsageError("give the model file once: either as MODEL or as --weights")
    if args.model is None and args.weights is None:
        raise UsageError("give a model file (MODEL), or --model-class with --weights")
    if args.model_class is None and args.weights is not None:
        raise UsageError("--weights holds a state dict: name the class that defines the "
                         "network with --model-class MODULE:CLASS")
    if args.model_kwargs is not None and args.model_class is None:
        raise UsageError("--model-kwargs needs --model-class")
    args.model = args.model if args.model is not None else args.weights
    return load_model(args.model, model_class=args.model_class, model_kwargs=args.model_kwargs,
                      trust_pickle=args.trust_pickle, target=getattr(args, "target", None))


def load_samples(path: Path):
    """Calibration samples (:func:`akida_workflows.loading.load_samples`): a 4-D NCHW batch,
    ``(N, C, L)`` signals for a 1-D model, or ``(N, F)`` vectors for a model whose first
    layer is a Linear (as ``check --input-shape F`` takes it)."""
    from .errors import DatasetError
    from .loading import load_samples as load

    try:
        samples = load(path)
    except DatasetError as exc:
        raise UsageError(str(exc)) from None
    if samples.ndim not in (2, 3, 4):
        raise UsageError(f"{path}: samples must be a 4-D NCHW batch (or (N, C, L) signals for a "
                         f"1-D model, or (N, F) vectors for a Linear-first model), got shape "
                         f"{samples.shape}")
    return samples


# ----------------------------------------------------------------------- commands


def _failed(report, stage: str, exc: Exception, seconds: float | None = None) -> None:
    """Record a failed stage (never a copy of another) and print the report so far."""
    from .errors import describe_exception

    report.add(stage, status=f"failed: {describe_exception(exc, limit=80)}", seconds=seconds)
    print(report)


def _import_toolchain() -> None:
    """Import the toolchain before the long steps start, quietly and in one place.

    An interruption (Ctrl-C) then never lands in the middle of an import, which
    would leave a half-initialised module behind and turn the interruption into
    a confusing import error instead of exit code 130.
    """
    from ._quiet import import_toolchain, quiet_toolchain_logs

    import_toolchain()
    with quiet_toolchain_logs():
        import cnn2snn  # noqa: F401
        import onnxruntime  # noqa: F401
        import quantizeml.models  # noqa: F401


def _quiet():
    """Toolchain calls without ONNX Runtime / TensorFlow / TorchScript log lines."""
    from ._quiet import quiet_toolchain_logs

    return quiet_toolchain_logs()


def cmd_check(args) -> int:
    from .compat import check_compatibility
    from .errors import AkidaWorkflowError

    kind, model = _load_model_args(args)
    if kind != "torch":
        raise UsageError("check reports in PyTorch module names: give the PyTorch model "
                         "(TorchScript, or --model-class with --weights), not ONNX")
    _progress(f"checking {args.model.name} against {args.target} (runs the toolchain)...")
    try:
        report = check_compatibility(model, args.input_shape, args.target)
    except AkidaWorkflowError as exc:
        if "does not run on an input of shape" in str(exc):
            raise UsageError(f"{exc} (check --input-shape)") from None
        raise
    print(report)
    if report.mapping is not None:
        # map(device, hw_only=True) on the converted model (or on its working copy).
        if report.stand_ins:
            which = (", ".join(report.stand_ins) if len(report.stand_ins) <= 4
                     else f"the {len(report.stand_ins)} modules above")
            print(f"once {which} are fixed (checked with stand-ins): "
                  f"{report.mapping.summary_line()}")
        else:
            print(report.mapping.summary_line())
    return EXIT_OK if report.ok else EXIT_INCOMPATIBLE


def cmd_convert(args) -> int:
    import tempfile

    # Intermediate ONNX files live only as long as the command.
    with tempfile.TemporaryDirectory(prefix="akida-workflows-") as tmp:
        return _convert(args, Path(tmp))


def _load_labels(path: Path | None, n: int):
    import numpy as np

    if path is None:
        return None
    if not path.is_file():
        raise UsageError(f"labels file not found: {path}")
    try:
        labels = np.load(str(path), allow_pickle=False)
    except Exception as exc:
        raise UsageError(f"{path} is not a .npy array: {exc}") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"{path}: labels must be a 1-D integer array, got {labels.dtype} "
                         f"{labels.shape}")
    if len(labels) != n:
        raise UsageError(f"{path}: {len(labels)} labels for {n} samples")
    return labels


def _measure(model, samples, labels):
    """StageReport.add arguments: the metrics on the given samples (nothing without labels)."""
    if labels is None:
        return {}
    from .evaluate import evaluate

    metrics = evaluate(model, samples, labels)
    return {"metrics": metrics}


@dataclass
class _Conversion:
    """One ``convert`` command's state, shared by its stages."""

    args: argparse.Namespace
    work: Path  # the temporary folder of the intermediate ONNX files
    kind: str  # "torch" or "onnx"
    original: object  # the model as given (before 1-D lowering) and its samples:
    signals: object  # what the compatibility report of a failure checks
    labels: object  # the samples' labels, or None
    report: object  # the evaluate.StageReport being built

    def measure(self, model, samples) -> dict:
        return _measure(model, samples, self.labels)

    def incompatible(self, target, stage, exc):
        """Print the compatibility report; the failure becomes an incompatibility (exit 3)."""
        from .compat import check_compatibility
        from .errors import AkidaWorkflowError, IncompatibleModelError, describe_exception

        report = None
        if self.kind == "torch":
            _progress("checking every module to explain the failure...")
            try:
                report = check_compatibility(self.original, self.signals.shape[1:], target,
                                             samples=self.signals[:64])
                print(report)
            except AkidaWorkflowError as check_exc:
                _progress(f"(no compatibility report: {check_exc})")
        if isinstance(exc, UsageError):
            return exc
        first = _first_issue(report)
        if first is not None:  # the report's words and the user's module names, not the
            return first       # toolchain's (the bridge's Keras or ONNX layer names)
        if isinstance(exc, IncompatibleModelError):
            return exc
        return IncompatibleModelError(f"{stage} failed: {describe_exception(exc)}")


def _first_issue(report):
    """The report's first fixable/unsupported row as an IncompatibleModelError, or None."""
    from .errors import IncompatibleModelError

    issues = [r for r in (report.rows if report is not None else [])
              if r.status in ("fixable", "unsupported")]
    if not issues:
        return None
    first, more = issues[0], len(issues) - 1
    return IncompatibleModelError(
        f"{first.module} ({first.kind}): {first.reason}. Fix: {first.fix}"
        + (f" ({more} more module(s) in the report above)" if more else ""),
        nodes=[first.module])


def _convert(args, work: Path) -> int:
    """``convert``: each stage a row of the printed report; a failed stage is exit 3."""
    _check_convert_options(args)
    kind, model = _load_model_args(args)
    samples = load_samples(args.samples)
    labels = _load_labels(getattr(args, "labels", None), len(samples))
    _import_toolchain()
    job = _Conversion(args, work, kind, model, samples, labels,
                      _input_report(args, kind, model, samples, labels))
    model, samples = _lower_1d(job, model, samples)
    if args.target == "akida2":
        akida_model, device, x, seconds = _to_akida2(job, model, samples)
    else:
        akida_model, device, x, seconds = _to_akida1(job, model, samples)
    return _save_converted(job, akida_model, device, x, seconds)


def _check_convert_options(args) -> None:
    """UsageError for a --bits the target does not take, or an --output not ending in .fbz."""
    bits = args.bits or (4 if args.target == "akida1" else 8)
    if (args.target, bits) not in (("akida2", 8), ("akida1", 4)):
        raise UsageError(f"--target {args.target} takes --bits {4 if args.target == 'akida1' else 8}"
                         " (QuantizeML's ONNX path is 8-bit only; Akida 1.0 is 4-bit here)")
    if args.output.suffix != ".fbz":
        raise UsageError(f"--output must end in .fbz, got {args.output}")


def _input_report(args, kind, model, samples, labels):
    """The report's first row: the model as given (measured when it is PyTorch)."""
    from .evaluate import StageReport

    title = args.model.name
    if labels is not None:
        title += f" (accuracy on the {len(labels)} given samples)"
    report = StageReport(title, missing="not measured")
    report.add(f"input ({kind})", size_bytes=args.model.stat().st_size,
               **(_measure(model, samples, labels) if kind == "torch" else {}))
    return report


def _lower_1d(job: _Conversion, model, samples):
    """1-D models (akida_workflows.lowering): lowered to their exact 2-D form, samples lifted."""
    from . import lowering

    if samples.ndim != 3:
        return model, samples
    if job.kind != "torch" or not lowering.is_1d(model):
        raise UsageError(f"{job.args.samples}: samples must be a 4-D NCHW batch for this model, "
                         f"got shape {samples.shape}; (N, C, L) signals go with a 1-D "
                         "PyTorch model (Conv1d layers), not ONNX")
    from .errors import IncompatibleModelError
    from .passes import PASSES

    # The flow's lower_1d pass, as check plans it: the toolchain and the mapper judge the
    # limits; a model without an exact 2-D form gets the full compatibility report.
    try:
        with _quiet():
            model, shape = PASSES["lower_1d"].apply(model, samples.shape[1:], job.args.target)
    except IncompatibleModelError as exc:
        raise job.incompatible(job.args.target, "1-D lowering", exc) from exc
    return model, lowering.prepare_samples(samples, shape)


def _to_akida2(job: _Conversion, model, samples):
    """(model, device, samples, seconds): float ONNX, QuantizeML 8-bit, CNN2SNN."""
    import onnx

    from .convert import quantize_onnx, to_akida

    report, stem = job.report, job.args.output.stem
    if job.kind == "torch":
        model = _export_float(job, model, samples)
    _progress(f"quantizing to 8 bits with QuantizeML on {len(samples)} samples...")
    start = time.perf_counter()
    try:
        with _quiet():
            quantized = quantize_onnx(model, samples)
    except Exception as exc:
        _failed(report, "quantized ONNX (8-bit)", exc, time.perf_counter() - start)
        raise job.incompatible("akida2", "quantization", exc) from exc
    q_path = job.work / f"{stem}_q8.onnx"
    onnx.save(quantized, str(q_path))
    report.add("quantized ONNX (8-bit)", path=q_path, seconds=time.perf_counter() - start,
               **job.measure(quantized, samples))
    _progress("converting with CNN2SNN...")
    start = time.perf_counter()
    try:
        with _quiet():
            akida_model = to_akida(quantized)
    except Exception as exc:
        _failed(report, "Akida 2.0 8-bit (.fbz)", exc, time.perf_counter() - start)
        raise job.incompatible("akida2", "conversion", exc) from exc
    from .evaluate import _akida_layout

    # (N, F) vectors of a Linear-first model as the Akida model takes them, (N, 1, 1, F)
    return (akida_model, "SixNodesIPv2", _akida_layout(akida_model, samples),
            time.perf_counter() - start)


def _export_float(job: _Conversion, model, samples):
    """The PyTorch model exported to ONNX (a report row); returns the ModelProto."""
    import torch

    from .export import export_onnx

    _progress("exporting to ONNX...")
    start = time.perf_counter()
    try:
        with _quiet():
            exported = export_onnx(model, torch.from_numpy(samples[:1]),
                                   job.work / f"{job.args.output.stem}.onnx")
    except Exception as exc:
        _failed(job.report, "float ONNX", exc, time.perf_counter() - start)
        raise job.incompatible("akida2", "export", exc) from exc
    job.report.add("float ONNX", path=exported.path, seconds=time.perf_counter() - start,
                   **job.measure(exported, samples))
    return exported.model


def _to_akida1(job: _Conversion, model, samples):
    """(model, device, NHWC samples, seconds): tf-keras rebuild, QuantizeML 4-bit, CNN2SNN."""
    import numpy as np

    from .keras_bridge import convert_keras, quantize_4bit, to_keras, to_nhwc

    if job.kind != "torch":
        raise UsageError("the 4-bit Akida 1.0 path goes through tf-keras and needs the "
                         "PyTorch model (--model-class with --weights), not ONNX")
    _progress("rebuilding the model in tf-keras...")
    start = time.perf_counter()
    try:
        with _quiet():
            keras_model = to_keras(model, samples.shape[1:])
        _progress(f"quantizing to 4 bits with QuantizeML on {len(samples)} samples...")
        with _quiet():
            quantized = quantize_4bit(keras_model, to_nhwc(samples, flip=keras_model))
        job.report.add("Keras, quantized (4-bit)", seconds=time.perf_counter() - start)
        start = time.perf_counter()
        with _quiet():
            akida_model = convert_keras(quantized)
    except Exception as exc:
        _failed(job.report, "Akida 1.0 4-bit (.fbz)", exc, time.perf_counter() - start)
        raise job.incompatible("akida1", "conversion", exc) from exc
    # flipped if the model takes it so (stride-2 padding=1 route)
    x = np.ascontiguousarray(to_nhwc(samples, flip=akida_model))
    return akida_model, "AKD1000", x, time.perf_counter() - start


def _save_converted(job: _Conversion, akida_model, device, x, seconds) -> int:
    """Map on ``device``, save the .fbz, print the mapping and the report."""
    from .deploy import map_report, save

    args = job.args
    _progress(f"mapping on a virtual {device}...")
    mapping = map_report(akida_model, device)
    path = save(akida_model, args.output, check_inputs=x[:32])
    job.report.add(f"Akida {'2.0 8-bit' if args.target == 'akida2' else '1.0 4-bit'} (.fbz)",
                   path=path, seconds=seconds, hw_fraction=mapping.hw_fraction,
                   program_bytes=mapping.program_bytes,
                   **job.measure(akida_model, x))
    print(mapping)
    print(job.report)
    print(f"wrote {path}")
    if not mapping.fully_mapped:
        _progress(f"warning: {len(mapping.software_layers)} layer(s) stay in software on {device}: "
                  "map(hw_only=True) fails")
    return EXIT_OK


def cmd_info(args) -> int:
    from .deploy import load, summarize

    if not args.model.is_file():
        raise UsageError(f"model file not found: {args.model}")
    try:
        model = load(args.model)
    except Exception as exc:
        raise UsageError(str(exc)) from None
    device = args.device or ("AKD1000" if str(model.ip_version).endswith("v1") else "SixNodesIPv2")
    _progress(f"mapping on {device} and measuring throughput...")
    summary = summarize(model, device)
    print(summary)
    if not summary.fits:
        print(summary.mapping)
    from .edge import edge_info

    info = edge_info(model)
    print(info if info is not None else "learning layer: none")
    return EXIT_OK


def _learning_model(model, args, x):
    """The model to learn on: ``model`` if it has a learning layer, else one made with
    ``--classes`` (IncompatibleModelError, exit 3, if it has none and none is asked)."""
    from .edge import edge_info, to_edge_model
    from .errors import IncompatibleModelError

    info = edge_info(model)
    if info is not None:
        if args.classes is not None:
            raise UsageError(f"{args.model} already has a learning layer ({info}); "
                             "--classes only makes one on a backbone")
        return model
    if args.classes is None:
        raise IncompatibleModelError(
            f"{args.model} has no learning layer: give --classes N to append one to this "
            "backbone (its last layer must emit 1-bit activations), or build it with "
            "akida_workflows.edge.to_edge_model")
    return to_edge_model(model, args.classes, neurons_per_class=args.neurons_per_class,
                         num_weights=args.num_weights, samples=x, seed=args.seed)


def cmd_learn(args) -> int:
    from .deploy import load, save
    from .edge import edge_info, learn
    from .errors import InvalidInputError
    from .evaluate import _akida_layout

    for path, what in ((args.model, "model"), (args.samples, "samples")):
        if not path.is_file():
            raise UsageError(f"{what} file not found: {path}")
    if args.output.suffix != ".fbz":
        raise UsageError(f"--output must end in .fbz, got {args.output}")
    samples = load_samples(args.samples)
    labels = _load_labels(args.labels, len(samples))
    try:
        model = load(args.model)
    except Exception as exc:
        raise UsageError(str(exc)) from None
    x = _akida_layout(model, samples)  # NCHW as for convert, or NHWC as the model takes
    try:
        model = _learning_model(model, args, x)
        seconds = learn(model, x, labels)
    except InvalidInputError as exc:
        raise UsageError(str(exc)) from None
    path = save(model, args.output, check_inputs=x[:32])
    info = edge_info(model)
    predicted = model.predict_classes(x, num_classes=info.num_classes)
    print(info)
    print(f"learned {len(x)} samples in {seconds:.3f} s ({1000 * seconds / len(x):.2f} ms per "
          f"sample, software backend); accuracy on them afterwards "
          f"{100 * float((predicted == labels).mean()):.1f} %")
    print(f"wrote {path}")
    return EXIT_OK


# -------------------------------------------------------------------------- parser

MODEL_FORMS = """\
ways to give the model (the first three never run the file author's Python code):
  model.onnx                  ONNX, e.g. torch.onnx.export(..., dynamo=False)
  model_ts.pt                 TorchScript, torch.jit.save(torch.jit.trace(model, x));
                              refused if its code names file or network operators
                              (torch.save, torch.from_file, ...); not for --target akida1
  --model-class pkg.mod:Net [--model-kwargs '{"n_classes": 10}'] --weights state.pt
                              a state dict, torch.save(model.state_dict()), loaded
                              with torch.load(weights_only=True) into the class you
                              name (pkg.mod on PYTHONPATH, or path/to/file.py:Net);
                              checkpoints with a 'state_dict' or 'model' key work too
  model.pt --trust-pickle     a full pickle, torch.save(model), only from authors you
                              trust. Unpickling runs whatever code the file's author
                              put in it, with your permissions.
"""


def _json_object(text: str) -> dict:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"n\": 10}}', got {text!r}")
    return value


def _add_model_arguments(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("model", type=Path, nargs="?", default=None,
                   help=f"{what}; see 'ways to give the model' below")
    p.add_argument("--model-class", metavar="MODULE:CLASS", default=None,
                   help="the class (or factory) that builds the network whose state dict "
                        "--weights holds: package.module:ClassName or path/to/file.py:ClassName")
    p.add_argument("--model-kwargs", type=_json_object, metavar="JSON", default=None,
                   help="keyword arguments of --model-class as a JSON object")
    p.add_argument("--weights", type=Path, metavar="FILE", default=None,
                   help="a state dict or checkpoint saved with torch.save, loaded with "
                        "weights_only=True")
    p.add_argument("--trust-pickle", action="store_true",
                   help=f"unpickle a full pickle (torch.save(model)). {PICKLE_RISK} Use only "
                        "for files whose author you trust.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="akida-workflows",
        description="Check, convert and inspect models for BrainChip Akida.",
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="report every module's compatibility with an Akida target",
                       description="Run the real toolchain on a copy of the model and report, "
                                   "per PyTorch module, ok / fixable / unsupported with the fix.",
                       epilog=MODEL_FORMS, formatter_class=_HelpFormatter)
    _add_model_arguments(p, "the PyTorch model: TorchScript file")
    p.add_argument("--input-shape", type=_shape, required=True, metavar="C,H,W",
                   help="channel-first input shape, e.g. 1,28,28; C,L for a 1-D (Conv1d) "
                        "model, e.g. 1,140")
    p.add_argument("--target", choices=["akida2", "akida1"], default="akida2")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("convert", help="quantize and convert a model to an Akida .fbz",
                       description="Quantize (8-bit for akida2, 4-bit for akida1), convert, map "
                                   "on a virtual device and save a .fbz (written atomically: a "
                                   "failed run leaves no .fbz and keeps an existing one); prints "
                                   "the stage report.",
                       epilog=MODEL_FORMS, formatter_class=_HelpFormatter)
    _add_model_arguments(p, "the model: .onnx or TorchScript file")
    p.add_argument("--samples", type=Path, required=True,
                   help="calibration inputs: a .npy float array, NCHW, preprocessed "
                        "((N, C, L) signals for a 1-D model, (N, F) vectors for a model "
                        "whose first layer is a Linear)")
    p.add_argument("--target", choices=["akida2", "akida1"], default="akida2")
    p.add_argument("--bits", type=int, choices=[8, 4], default=None,
                   help="8 for akida2 (default), 4 for akida1 (default)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .fbz to write")
    p.add_argument("--labels", type=Path, default=None,
                   help="integer labels of the samples (.npy): measure each stage's accuracy "
                        "on them (otherwise accuracy is 'not measured')")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("info", help="map an .fbz on a device and measure its throughput")
    p.add_argument("model", type=Path, help="an Akida .fbz file")
    p.add_argument("--device", default=None,
                   help="AKD1000, AKD1500, TwoNodesIPv2, SixNodesIPv2, ... (default: by version)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("learn", help="learn labelled samples on an Akida 1.0 learning layer",
                       description="Akida 1.0 edge learning: the learning layer of MODEL (see "
                                   "akida_workflows.edge) learns the samples with their labels; "
                                   "the learned model is saved atomically to --output (MODEL is "
                                   "not modified).")
    p.add_argument("model", type=Path,
                   help="an Akida 1.0 .fbz with a learning layer (or a backbone with 1-bit "
                        "features, with --classes)")
    p.add_argument("--samples", type=Path, required=True,
                   help="a .npy float array, preprocessed as for training: NCHW (as for "
                        "convert) or NHWC (the model's input shape)")
    p.add_argument("--labels", type=Path, required=True,
                   help="a .npy 1-D integer array, one class per sample, in 0..classes-1")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .fbz to write")
    p.add_argument("--classes", type=int, default=None,
                   help="append a learning layer of this many classes to a backbone first")
    p.add_argument("--neurons-per-class", type=int, default=5,
                   help="with --classes: neurons of each class (default 5)")
    p.add_argument("--num-weights", type=int, default=None,
                   help="with --classes: weights per neuron (default: the mean number of "
                        "active features of the samples)")
    p.add_argument("--seed", type=int, default=0,
                   help="with --classes: seed of the learning layer's initial connections "
                        "(default 0)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_learn)
    return parser


def main(argv=None) -> int:
    if argv is None:  # the program itself (console script, python -m), not a caller
        from ._gc import skip_final_collection

        skip_final_collection()  # its exit skips walking TensorFlow's graphs again (2 s)
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .errors import AkidaWorkflowError, IncompatibleModelError

    try:
        return args.func(args)
    except UsageError as exc:
        if args.debug:
            raise
        print(f"akida-workflows {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except IncompatibleModelError as exc:
        if args.debug:
            raise
        print(f"akida-workflows {args.command}: incompatible model: {exc}", file=sys.stderr)
        return EXIT_INCOMPATIBLE
    except AkidaWorkflowError as exc:
        if args.debug:
            raise
        print(f"akida-workflows {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if "not found" in str(exc) or "not a valid" in str(exc) else EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # unexpected: one line, or the traceback with --debug
        if args.debug:
            raise
        print(f"akida-workflows {args.command}: unexpected error: {type(exc).__name__}: {exc} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
