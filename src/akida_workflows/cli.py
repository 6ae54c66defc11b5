"""``akida-workflows``: check, convert and inspect models from the command line.

Exit codes: 0 success, 2 usage error (bad arguments, missing or unreadable
files, bad samples), 3 incompatible model (the report is printed), 1 anything
else. Errors print one line without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INCOMPATIBLE = 0, 1, 2, 3


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


def load_model(path: Path):
    """``("onnx", ModelProto)`` or ``("torch", nn.Module)`` from a model file.

    Accepts ``.onnx``, TorchScript (``torch.jit.save``) and pickled modules
    (``torch.save(model)``). ``torch.export`` archives (``.pt2``) are refused with
    the reason: they hold ATen operations rather than ``nn.Module`` layers, pin
    the batch size, and need an ONNX exporter newer than the Akida stack allows.
    """
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    if path.suffix == ".onnx":
        import onnx

        try:
            model = onnx.load(str(path))
            onnx.checker.check_model(model)
        except Exception as exc:
            raise UsageError(f"{path} is not a valid ONNX model: {exc}") from None
        return "onnx", model
    import torch

    errors = []
    if path.suffix == ".pt2":
        raise UsageError(
            f"{path.name}: torch.export programs are not supported: they hold ATen operations, "
            "not nn.Module layers (which check and the Akida 1.0 path need), fix the batch size, "
            "and their ONNX exporter needs a newer onnx-ir than QuantizeML 1.2.5 allows. Save "
            "the model with torch.jit.save(torch.jit.trace(model, x)) or torch.save(model), "
            "or export it to ONNX with torch.onnx.export(..., dynamo=False).")
    try:
        return "torch", torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        errors.append(f"TorchScript: {exc}")
    try:
        model = torch.load(str(path), map_location="cpu", weights_only=False)
        if isinstance(model, torch.nn.Module):
            return "torch", model
        errors.append(f"pickle: holds a {type(model).__name__}, not a module (a state_dict?)")
    except Exception as exc:
        errors.append(f"pickle: {exc}")
    raise UsageError(
        f"cannot read {path} as a model (.onnx, TorchScript, or a pickled "
        "nn.Module): " + "; ".join(e.splitlines()[0] for e in errors))


def load_samples(path: Path):
    import numpy as np

    if not path.is_file():
        raise UsageError(f"samples file not found: {path}")
    try:
        samples = np.load(str(path), allow_pickle=False)
    except Exception as exc:
        raise UsageError(f"{path} is not a .npy array: {exc}") from None
    if not np.issubdtype(samples.dtype, np.floating):
        raise UsageError(
            f"{path}: samples must be float (preprocessed as for training), got {samples.dtype}")
    if samples.ndim != 4:
        raise UsageError(f"{path}: samples must be a 4-D NCHW batch, got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise UsageError(f"{path}: samples contain NaN or inf")
    return np.ascontiguousarray(samples, dtype=np.float32)


# ----------------------------------------------------------------------- commands


def _failed(report, stage: str, exc: Exception) -> None:
    """Record a failed stage (never a copy of another) and print the report so far."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    report.add(stage, status=f"failed: {first_line[:80]}")
    print(report)


def cmd_check(args) -> int:
    from .compat import check_compatibility

    kind, model = load_model(args.model)
    if kind != "torch":
        raise UsageError("check reports in PyTorch module names: give the PyTorch model "
                         "(TorchScript or pickled module), not ONNX")
    _progress(f"checking {args.model.name} against {args.target} (runs the toolchain)...")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = check_compatibility(model, args.input_shape, args.target)
    print(report)
    return EXIT_OK if report.ok else EXIT_INCOMPATIBLE


def cmd_convert(args) -> int:
    import tempfile

    # Intermediate ONNX files live only as long as the command.
    with tempfile.TemporaryDirectory(prefix="akida-workflows-") as tmp:
        return _convert(args, Path(tmp))


def _convert(args, work: Path) -> int:
    import numpy as np
    import onnx
    import torch

    from .compat import check_compatibility
    from .deploy import map_report, save
    from .evaluate import StageReport

    bits = args.bits or (4 if args.target == "akida1" else 8)
    if (args.target, bits) not in (("akida2", 8), ("akida1", 4)):
        raise UsageError(f"--target {args.target} takes --bits {4 if args.target == 'akida1' else 8}"
                         " (QuantizeML's ONNX path is 8-bit only; Akida 1.0 is 4-bit here)")
    if args.output.suffix != ".fbz":
        raise UsageError(f"--output must end in .fbz, got {args.output}")
    kind, model = load_model(args.model)
    samples = load_samples(args.samples)
    report = StageReport(args.model.name)
    report.add(f"input ({kind})", size_bytes=args.model.stat().st_size)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.target == "akida2":
            from .convert import quantize_onnx, to_akida
            from .export import export_onnx

            if kind == "torch":
                _progress("exporting to ONNX...")
                try:
                    exported = export_onnx(model, torch.from_numpy(samples[:1]),
                                           work / f"{args.output.stem}.onnx")
                except Exception as exc:
                    _failed(report, "float ONNX", exc)
                    raise
                report.add("float ONNX", path=exported.path, seconds=time.perf_counter() - start)
                model = exported.model
            _progress(f"quantizing to 8 bits with QuantizeML on {len(samples)} samples...")
            try:
                quantized = quantize_onnx(model, samples)
            except Exception as exc:
                _failed(report, "quantized ONNX (8-bit)", exc)
                if kind == "torch":
                    print(check_compatibility(load_model(args.model)[1], samples.shape[1:],
                                              "akida2", samples=samples[:64]))
                raise
            q_path = work / f"{args.output.stem}_q8.onnx"
            onnx.save(quantized, str(q_path))
            report.add("quantized ONNX (8-bit)", path=q_path,
                       seconds=time.perf_counter() - start)
            _progress("converting with CNN2SNN...")
            akida_model = to_akida(quantized)
            device = "SixNodesIPv2"
        else:
            from .keras_bridge import convert_keras, quantize_4bit, to_keras, to_nhwc

            if kind != "torch":
                raise UsageError("the 4-bit Akida 1.0 path goes through tf-keras and needs the "
                                 "PyTorch model (TorchScript or pickled module), not ONNX")
            _progress("rebuilding the model in tf-keras...")
            try:
                keras_model = to_keras(model, samples.shape[1:])
                _progress(f"quantizing to 4 bits with QuantizeML on {len(samples)} samples...")
                akida_model = convert_keras(quantize_4bit(keras_model,
                                                          to_nhwc(samples, flip=keras_model)))
            except Exception as exc:
                _failed(report, "Akida 1.0 4-bit (.fbz)", exc)
                print(check_compatibility(model, samples.shape[1:], "akida1",
                                          samples=samples[:64]))
                raise
            device = "AKD1000"
    convert_seconds = time.perf_counter() - start
    _progress(f"mapping on a virtual {device}...")
    mapping = map_report(akida_model, device)
    if args.target == "akida2":
        x = samples[:32]
    else:
        from .keras_bridge import to_nhwc

        x = to_nhwc(samples[:32], flip=akida_model)  # flipped if the model takes it so
    path = save(akida_model, args.output, check_inputs=np.ascontiguousarray(x))
    report.add(f"Akida {'2.0 8-bit' if args.target == 'akida2' else '1.0 4-bit'} (.fbz)",
               path=path, seconds=convert_seconds, hw_fraction=mapping.hw_fraction)
    print(mapping)
    print(report)
    print(f"wrote {path}")
    if not mapping.fully_mapped:
        _progress(f"warning: {len(mapping.software_layers)} layer(s) stay in software on {device}")
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
    print(summarize(model, device))
    return EXIT_OK


# -------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="akida-workflows",
        description="Check, convert and inspect models for BrainChip Akida.",
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="report every module's compatibility with an Akida target",
                       description="Run the real toolchain on a copy of the model and report, "
                                   "per PyTorch module, ok / fixable / unsupported with the fix.")
    p.add_argument("model", type=Path, help="TorchScript file or pickled nn.Module")
    p.add_argument("--input-shape", type=_shape, required=True, metavar="C,H,W",
                   help="channel-first input shape, e.g. 1,28,28")
    p.add_argument("--target", choices=["akida2", "akida1"], default="akida2")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("convert", help="quantize and convert a model to an Akida .fbz",
                       description="Quantize (8-bit for akida2, 4-bit for akida1), convert, map "
                                   "on a virtual device and save a .fbz; prints the stage report.")
    p.add_argument("model", type=Path, help=".onnx, TorchScript file or pickled nn.Module")
    p.add_argument("--samples", type=Path, required=True,
                   help="calibration inputs: a .npy float array, NCHW, preprocessed")
    p.add_argument("--target", choices=["akida2", "akida1"], default="akida2")
    p.add_argument("--bits", type=int, choices=[8, 4], default=None,
                   help="8 for akida2 (default), 4 for akida1 (default)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .fbz to write")
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
    return parser


def main(argv=None) -> int:
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
