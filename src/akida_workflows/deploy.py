"""Map Akida models onto (virtual) hardware and say honestly what runs where.

A converted Akida model is not yet "on Akida": the mapper decides, layer by
layer, whether each fits a neural processor (NP) of the device. Layers it
cannot place run in the software backend. :func:`map_report` maps a *copy* of
the model and returns, per layer, hardware or software, the NPs used, and the
mapper's own reason when a layer stays in software.
"""

from __future__ import annotations

import html
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AkidaWorkflowError, MappingError
from .tables import Table

__all__ = [
    "LayerMapping",
    "MapReport",
    "DeploymentSummary",
    "resolve_device",
    "map_report",
    "summarize",
    "save",
    "load",
]

#: Layer types that carry no computation of their own.
NON_COMPUTE_TYPES = frozenset({"Quantizer", "Dequantizer", "InputData"})
#: Virtual devices accepted by name.
DEVICE_NAMES = (
    "AKD1000", "AKD1500", "AKD1500_v1", "PicoIP", "TwoNodesIP_v1", "TwoNodesIPv1",
    "TwoNodesIPv2", "FourNodesIPv2", "SixNodesIPv2", "TwelveNodesIPv2",
)


@dataclass
class LayerMapping:
    """Where one layer runs after mapping.

    Attributes
    ----------
    name, layer_type : str
    backend : str
        ``"hardware"`` or ``"software"``: the backend of the sequence the
        mapper put the layer in.
    nps : str
        NPs used, e.g. ``"16 CNP1"``; ``"none needed"`` for a layer that runs
        in a hardware sequence without an NP of its own (``Add``, …); empty in
        software.
    reason : str
        The mapper's reason why a compute layer stays in software ("" otherwise).
    compute : bool
        False for Quantizer / Dequantizer / InputData layers.
    sequence : int or None
        Index of the mapped sequence holding the layer (``None`` if in none).
    pass_index : int or None
        Index of the pass within that sequence.
    """

    name: str
    layer_type: str
    backend: str
    nps: str
    reason: str
    compute: bool
    sequence: int | None = None
    pass_index: int | None = None


@dataclass
class MapReport:
    """Result of :func:`map_report`.

    Attributes
    ----------
    device : str
        Name of the virtual device.
    layers : list of LayerMapping
    model : akida.Model
        The mapped copy (the caller's model is left unmapped).
    np_counts : dict
        NP type -> count used by the whole model.
    hw_only_error : str
        The mapper's message when ``map(device, hw_only=True)`` fails ("" when
        it succeeds): the judge of :attr:`fully_mapped`.
    sequences : list of tuple
        ``(backend, number of passes, layer names)`` of each mapped sequence.
    """

    device: str
    layers: list[LayerMapping] = field(default_factory=list)
    model: object = None
    np_counts: dict = field(default_factory=dict)
    hw_only_error: str = ""
    sequences: list = field(default_factory=list)

    @property
    def compute_layers(self) -> list[LayerMapping]:
        return [layer for layer in self.layers if layer.compute]

    @property
    def hw_fraction(self) -> float:
        """Fraction of compute layers in hardware sequences (with or without an NP)."""
        compute = self.compute_layers
        if not compute:
            return 0.0
        return sum(layer.backend == "hardware" for layer in compute) / len(compute)

    @property
    def fully_mapped(self) -> bool:
        """True when ``map(device, hw_only=True)`` succeeds: the whole model runs on the NPs."""
        return bool(self.compute_layers) and not self.hw_only_error

    @property
    def software_layers(self) -> list[LayerMapping]:
        return [layer for layer in self.compute_layers if layer.backend != "hardware"]

    @property
    def program_bytes(self) -> int:
        """Size of the mapped program (what the device stores): the sum of
        ``len(sequence.program)`` over the mapped model's sequences (0 when unmapped)."""
        if self.model is None:
            return 0
        return int(sum(len(seq.program) for seq in self.model.sequences
                       if getattr(seq, "program", None) is not None))

    def records(self) -> list[dict[str, str]]:
        return [
            {
                "layer": f"{layer.name} ({layer.layer_type})",
                "runs on": layer.backend if layer.compute else "-",
                "NPs": layer.nps or "-",
                "why not in hardware": layer.reason or "",
            }
            for layer in self.layers
        ]

    @property
    def hardware_passes(self) -> int:
        """Passes the mapper needs for the hardware sequences (1 when the model fits at once)."""
        return sum(n for backend, n, _ in self.sequences if backend == "hardware")

    def summary_line(self) -> str:
        compute = self.compute_layers
        hw = sum(layer.backend == "hardware" for layer in compute)
        nps = ", ".join(f"{n} {t}" for t, n in sorted(self.np_counts.items())) or "none"
        line = (
            f"{self.device}: {hw}/{len(compute)} compute layers in hardware "
            f"({100 * self.hw_fraction:.0f} %); NPs used: {nps}"
        )
        if self.hw_only_error and hw == len(compute):
            line += "; map(hw_only=True) still fails: " + " ".join(self.hw_only_error.split())
        return line

    def __str__(self) -> str:
        recs = self.records()
        cols = ["layer", "runs on", "NPs", "why not in hardware"]
        widths = {c: max(len(c), *(len(r[c]) for r in recs)) for c in cols}
        lines = [self.summary_line(), "  ".join(c.ljust(widths[c]) for c in cols).rstrip()]
        lines.append("  ".join("-" * widths[c] for c in cols))
        lines += ["  ".join(r[c].ljust(widths[c]) for c in cols).rstrip() for r in recs]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        cols = ["layer", "runs on", "NPs", "why not in hardware"]
        head = "".join(f"<th>{c}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in cols) + "</tr>"
            for r in self.records()
        )
        return (
            f"<p>{html.escape(self.summary_line())}</p>"
            f'<table class="table akida-report"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )


def resolve_device(device):
    """An ``akida.Device`` from a device object or a virtual device name.

    Parameters
    ----------
    device : akida device or str
        e.g. ``"SixNodesIPv2"`` (Akida 2.0) or ``"AKD1000"`` (Akida 1.0).
    """
    import akida

    if isinstance(device, str):
        if device not in DEVICE_NAMES or not hasattr(akida, device):
            raise MappingError(
                f"unknown virtual device {device!r}; choose one of {', '.join(DEVICE_NAMES)}"
            )
        return device, getattr(akida, device)()
    name = getattr(device, "desc", None) or type(device).__name__
    return str(name), device


_REASON_ITEM = re.compile(r"\*\s*Layer '([^']+)':\s*(.+)")
_REASON_SINGLE = re.compile(r"Cannot map layer '([^']+)'\.\s*(.+)", re.S)


def _parse_reasons(message: str) -> dict[str, str]:
    reasons = {}
    for name, why in _REASON_ITEM.findall(message):
        reasons.setdefault(name, why.strip())
    if not reasons:
        match = _REASON_SINGLE.search(message)
        if match:
            reasons[match.group(1)] = " ".join(match.group(2).split())
    return reasons


def _copy(model):
    import akida

    return akida.Model(layers=list(model.layers))


def _layer_type(layer) -> str:
    return str(layer.parameters.layer_type).split(".")[-1]


def map_report(akida_model, device="SixNodesIPv2") -> MapReport:
    """Map a copy of ``akida_model`` on a virtual device and report each layer.

    The judge is the mapper itself: ``map(device, hw_only=True)`` on a copy.
    When it succeeds, every layer runs in a hardware sequence and the report
    reads that mapping. When it fails, a copy mapped with ``hw_only=False``
    shows where each layer lands (the backend of its sequence), and the failed
    attempt's message gives the reasons. Each layer's backend is that of the
    sequence the mapper put it in, so a layer that needs no NP of its own
    (``Add``, …) inside a hardware sequence counts as hardware ("none needed");
    :attr:`MapReport.fully_mapped` is exactly "``hw_only=True`` succeeds". No
    layer is ever mapped on its own (a lone ``Add`` cannot be mapped at all).

    Parameters
    ----------
    akida_model : akida.Model
        A converted, unmapped model (it is not modified).
    device : str or akida device, default "SixNodesIPv2"
        Akida 2.0: ``"TwoNodesIPv2"``, ``"SixNodesIPv2"``, ``"TwelveNodesIPv2"``…;
        Akida 1.0: ``"AKD1000"``.

    Returns
    -------
    MapReport
        ``.hw_fraction``, ``.fully_mapped``, per-layer rows, the mapped copy.

    Raises
    ------
    MappingError
        Unknown device, or a model the device cannot take at all (e.g. an
        Akida 2.0 model on an Akida 1.0 device).
    """
    import akida

    if not isinstance(akida_model, akida.Model):
        raise MappingError(f"expected an akida.Model, got {type(akida_model).__name__}")
    name, dev = resolve_device(device)
    mapped = _copy(akida_model)
    hw_only_error = ""
    try:
        mapped.map(dev, hw_only=True)
    except Exception as exc:  # the mapper raises RuntimeError with its reasons
        hw_only_error = str(exc).strip() or type(exc).__name__
        mapped = _copy(akida_model)
        try:
            mapped.map(dev, hw_only=False)
        except Exception as exc2:
            raise MappingError(f"cannot map the model on {name}: {exc2}") from exc2
    reasons = _parse_reasons(hw_only_error)

    where: dict[str, tuple[int, bool, int]] = {}
    sequences = []
    for s_index, seq in enumerate(mapped.sequences):
        in_hw = "Hardware" in str(seq.backend)
        names = []
        for p_index, p in enumerate(seq.passes):
            for layer in p.layers:
                where[layer.name] = (s_index, in_hw, p_index)
                names.append(layer.name)
        sequences.append(("hardware" if in_hw else "software", len(seq.passes), names))

    rows, counts = [], Counter()
    for layer in mapped.layers:
        layer_type = _layer_type(layer)
        compute = layer_type not in NON_COMPUTE_TYPES
        nps = list(layer.mapping.nps) if layer.mapping is not None else []
        per_type = Counter(str(np_.type).split(".")[-1] for np_ in nps)
        counts.update(per_type)
        s_index, in_hw, p_index = where.get(layer.name, (None, False, None))
        backend = "hardware" if in_hw else "software"
        np_text = ", ".join(f"{n} {t}" for t, n in sorted(per_type.items()))
        if not np_text and in_hw and compute:
            np_text = "none needed"
        reason = ""
        if compute and backend == "software":
            reason = reasons.get(layer.name, "")
            if not reason:
                named = [n for n in reasons if n != layer.name]
                reason = (
                    "kept in software with its sequence"
                    + (f" (see {', '.join(named)})" if named else
                       f": {' '.join(hw_only_error.split())}" if hw_only_error else "")
                )
        rows.append(LayerMapping(
            name=layer.name, layer_type=layer_type, backend=backend, nps=np_text,
            reason=reason, compute=compute, sequence=s_index, pass_index=p_index,
        ))
    return MapReport(device=name, layers=rows, model=mapped, np_counts=dict(counts),
                     hw_only_error=hw_only_error, sequences=sequences)


@dataclass
class DeploymentSummary:
    """Result of :func:`summarize`: how a model sits on a device, and how fast it runs.

    Attributes
    ----------
    program_bytes : int
        Size of the mapped program, what the device stores: the sum of
        ``len(sequence.program)`` over the model's sequences after ``map``.
        It reflects the weights' bit-width (4-bit weights are packed).
    external_bytes : int
        Part of the program the device keeps in external memory (the mapper's
        ``external_memory_size``; e.g. the weights of large fully-connected layers
        on the AKD1000).
    fbz_bytes : int or None
        Size of the saved ``.fbz`` file. The file stores every weight in a byte
        whatever its bit-width, so a 4-bit and an 8-bit model of one network
        have nearly the same ``.fbz`` size; compare programs instead.
    """

    device: str
    ip_version: str
    input_shape: tuple
    output_shape: tuple
    mapping: MapReport
    program_bytes: int
    images_per_second: float
    batch_size: int
    external_bytes: int = 0
    fbz_bytes: int | None = None

    @property
    def fits(self) -> bool:
        """True when every compute layer is mapped onto the device's NPs."""
        return self.mapping.fully_mapped

    def records(self) -> list[dict[str, str]]:
        nps = ", ".join(f"{n} {t}" for t, n in sorted(self.mapping.np_counts.items())) or "none"
        return [
            {"item": "device", "value": f"{self.device} (Akida {self.ip_version})"},
            {"item": "input / output", "value": f"{list(self.input_shape)} → {list(self.output_shape)}"},
            {"item": "layers", "value": str(len(self.mapping.layers))},
            {"item": "compute layers in hardware",
             "value": f"{sum(lay.backend == 'hardware' for lay in self.mapping.compute_layers)}"
                      f"/{len(self.mapping.compute_layers)}"},
            {"item": "NPs used", "value": nps},
            {"item": "fits entirely", "value": "yes" if self.fits else "no"},
            {"item": "program size (mapped)",
             "value": f"{self.program_bytes / 1024:.1f} KiB"
                      + (f", of which {self.external_bytes / 1024:.1f} KiB in external memory"
                         if self.external_bytes else "")},
            {"item": ".fbz file size",
             "value": "-" if self.fbz_bytes is None else
                      f"{self.fbz_bytes / 1024:.1f} KiB (weights stored one per byte)"},
            {"item": "software backend throughput",
             "value": f"{self.images_per_second:,.0f} images/s (batch {self.batch_size}, CPU)"},
        ]

    def __str__(self) -> str:
        return str(Table(self.records(), title=f"Akida model on {self.device}"))

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return Table(self.records(), title=f"Akida model on {self.device}")._repr_html_()


def summarize(akida_model, device="AKD1000", *, batch_size: int = 64, repeat: int = 3,
              seed: int = 0) -> DeploymentSummary:
    """Map a model on a virtual device and measure its software-backend throughput.

    Parameters
    ----------
    akida_model : akida.Model
    device : str or akida device, default "AKD1000"
        ``"AKD1000"``, ``"AKD1500"``, ``"TwoNodesIPv2"``, ``"SixNodesIPv2"``, …
    batch_size : int, default 64
        Images per ``predict`` call in the throughput measurement.
    repeat : int, default 3
        Timed repetitions; the best is kept.
    seed : int, default 0
        Seed of the random input batch.

    Returns
    -------
    DeploymentSummary
        Layers, NPs used, whether it fits, the mapped program's size (what the
        device stores, and how much of it sits in external memory) beside the
        ``.fbz`` file's size, and the measured images/s of the CPU software
        backend (a real chip is faster; no hardware is needed for this figure).
    """
    import tempfile
    import time

    mapping = map_report(akida_model, device)
    program = mapping.program_bytes
    external = int(getattr(mapping.model, "external_memory_size", 0) or 0)
    with tempfile.TemporaryDirectory() as tmp:
        fbz = Path(tmp) / "model.fbz"
        akida_model.save(str(fbz))
        fbz_bytes = fbz.stat().st_size
    shape = tuple(int(d) for d in akida_model.input_shape)
    x = np.random.default_rng(seed).uniform(-1, 1, (batch_size, *shape)).astype(np.float32)
    akida_model.predict(x[:1])  # warm-up
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        akida_model.predict(x)
        best = min(best, time.perf_counter() - start)
    return DeploymentSummary(
        device=mapping.device,
        ip_version={"v1": "1.0", "v2": "2.0"}.get(str(akida_model.ip_version).split(".")[-1], "?"),
        input_shape=shape, output_shape=tuple(int(d) for d in akida_model.output_shape),
        mapping=mapping, program_bytes=int(program), images_per_second=batch_size / best,
        batch_size=batch_size, external_bytes=external, fbz_bytes=int(fbz_bytes),
    )


def save(akida_model, path: str | os.PathLike, check_inputs=None) -> Path:
    """Save an Akida model to ``.fbz`` atomically; optionally check the reload is identical.

    The model is written to a temporary file in the same folder
    (``.NAME.<random>.partial.fbz``), reloaded and checked if asked, flushed to
    disk, and only then renamed over ``path`` (:func:`os.replace`). A failed or
    interrupted save leaves no ``.fbz`` behind and keeps an existing ``path``
    unchanged; only a process killed outright (``SIGKILL``, power loss) can leave
    the hidden ``.partial.fbz`` file, never a half-written ``path``.

    Parameters
    ----------
    akida_model : akida.Model
    path : str or path-like
        Target file (``.fbz``); parent folders are created.
    check_inputs : numpy.ndarray, optional
        If given, the written file is reloaded (see :func:`load`) and its outputs
        on these inputs (float inputs as ``float32``; integer inputs as given)
        must be bit-identical to the original model's.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    AkidaWorkflowError
        If the path does not end in ``.fbz``, the model cannot be written, or the
        reloaded model computes something else (``path`` is then left as it was).
    """
    import secrets

    path = Path(path)
    if path.suffix != ".fbz":
        raise AkidaWorkflowError(f"Akida models are saved as .fbz, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.partial.fbz")
    try:
        try:
            akida_model.save(str(tmp))
        except Exception as exc:
            raise AkidaWorkflowError(f"cannot write {path}: {exc}") from exc
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise AkidaWorkflowError(f"cannot write {path}: the Akida model wrote nothing")
        if check_inputs is not None:
            try:
                reloaded = load(tmp)
            except AkidaWorkflowError as exc:
                raise AkidaWorkflowError(
                    f"{path}: the written model does not reload ({exc}); the file was not "
                    "written") from exc
            x = np.ascontiguousarray(check_inputs)
            if np.issubdtype(x.dtype, np.floating):
                x = x.astype(np.float32, copy=False)
            if not np.array_equal(akida_model.predict(x), reloaded.predict(x)):
                raise AkidaWorkflowError(
                    f"{path}: the reloaded model's outputs differ; the file was not written")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: Run in a child process by :func:`load`: a corrupt .fbz can crash Akida's native loader.
_PROBE = """
import sys
import numpy as np
import akida
model = akida.Model(sys.argv[1])
shape = tuple(int(d) for d in model.input_shape)
tuple(int(d) for d in model.output_shape)
for layer in model.layers:
    str(layer.parameters)
for dtype in (np.float32, np.uint8, np.int8):
    try:
        model.predict(np.zeros((1, *shape), dtype=dtype))
        break
    except Exception:
        pass
"""


def _probe(path: Path, shown: Path, timeout: float) -> None:
    """Load ``path`` in a child process; AkidaWorkflowError if it fails, crashes or hangs."""
    import signal
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True,
                                text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise AkidaWorkflowError(
            f"{shown} is not a valid Akida model: loading it did not finish in {timeout:g} s"
        ) from None
    if result.returncode == 0:
        return
    if result.returncode < 0:
        try:
            name = signal.Signals(-result.returncode).name
        except ValueError:
            name = f"signal {-result.returncode}"
        raise AkidaWorkflowError(
            f"{shown} is not a valid Akida model: Akida's native loader crashed on it ({name}); "
            "the file is truncated or corrupt")
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {result.returncode}"
    raise AkidaWorkflowError(f"{shown} is not a valid Akida model: {reason}")


def load(path: str | os.PathLike, *, probe: bool = True, timeout: float = 120.0):
    """Load an ``.fbz`` Akida model, with a clear error for a missing or bad file.

    Akida's native loader (akida 2.19.3) does not validate its input: in our
    fuzz tests a truncated or overwritten ``.fbz`` crashed the interpreter with a
    segmentation fault (about one file in five), and one loaded file aborted in
    ``predict``. So by default the file is copied to a private temporary file,
    loaded (and run once on zeros) in a child process first, and only then
    loaded here from the same copy.

    Parameters
    ----------
    path : str or path-like
        An ``.fbz`` written by ``akida.Model.save`` / :func:`save`.
    probe : bool, default True
        Load in a child process first (about a second). Turn off only for files
        you just wrote yourself.
    timeout : float, default 120
        Seconds the child process may take.

    Returns
    -------
    akida.Model

    Raises
    ------
    AkidaWorkflowError
        If the file is missing, unreadable, or not a valid Akida model (including
        one that crashes or hangs the loader). ``.fbz`` files carry no checksum:
        a flipped bit inside a weight can still load as a different model.
    """
    import shutil
    import tempfile

    import akida

    path = Path(path)
    if not path.is_file():
        raise AkidaWorkflowError(f"Akida model file not found: {path}")
    with tempfile.TemporaryDirectory(prefix="akida-workflows-load-") as tmp:
        copy = Path(tmp) / "model.fbz"
        try:
            shutil.copyfile(path, copy)
        except OSError as exc:
            raise AkidaWorkflowError(f"cannot read {path}: {exc}") from None
        if copy.stat().st_size == 0:
            raise AkidaWorkflowError(f"{path} is not a valid Akida model: the file is empty")
        if probe:
            _probe(copy, path, timeout)
        try:
            return akida.Model(str(copy))
        except Exception as exc:
            raise AkidaWorkflowError(f"{path} is not a valid Akida model: {exc}") from exc
