"""Train and evaluate PyTorch models, deterministically, with a progress bar."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TrainHistory", "seed_everything", "train", "evaluate_torch", "distillation_set"]


def seed_everything(seed: int = 0) -> None:
    """Seed Python, numpy and torch and ask torch for deterministic kernels.

    Parameters
    ----------
    seed : int, default 0
    """
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global RNG user code may use
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


#: The learning-rate schedules :func:`train` knows (``None``: constant).
SCHEDULES = (None, "onecycle")


@dataclass
class TrainHistory:
    """Per-epoch training record returned by :func:`train`.

    Attributes
    ----------
    loss : list of float
        Mean training loss of each epoch.
    accuracy : list of float
        Training accuracy (fraction) of each epoch, measured on the fly.
    seconds : float
        Wall time of the whole run.
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train(
    model,
    loader,
    epochs: int,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    *,
    optimizer: Callable | None = None,
    loss_fn: Callable | None = None,
    schedule: str | None = None,
) -> TrainHistory:
    """Train ``model`` in place on ``loader`` for ``epochs`` epochs.

    Parameters
    ----------
    model : torch.nn.Module
    loader : torch.utils.data.DataLoader
        Yields ``(inputs, labels)``.
    epochs : int
    lr : float, default 1e-3
        Learning rate of the optimizer.
    seed : int, default 0
        Seeds torch (and the loader's generator, when it has one) before training,
        so two runs with the same seed give the same weights.
    progress : bool, default True
        Show a tqdm bar per epoch with the running loss.
    optimizer : callable, optional
        ``optimizer(parameters, lr=lr)``; defaults to :class:`torch.optim.Adam`.
    loss_fn : callable, optional
        Defaults to :class:`torch.nn.CrossEntropyLoss`.
    schedule : {None, "onecycle"}, default None
        ``None`` keeps ``lr`` constant. ``"onecycle"`` follows
        :class:`torch.optim.lr_scheduler.OneCycleLR` over all the run's steps, with
        ``lr`` as its peak: warm-up over the first 30 %, then annealing to nearly
        zero. A short run converges much further this way (the examples train in
        half the epochs to higher accuracies than a constant rate gave them).

    Returns
    -------
    TrainHistory
        Mean loss and accuracy of each epoch.

    Raises
    ------
    ValueError
        ``epochs < 1``, an empty loader, or an unknown ``schedule``.
    FloatingPointError
        The loss became NaN or infinite (lower ``lr``).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if len(loader) == 0:
        raise ValueError("the training loader is empty")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    seed_everything(seed)
    generator = getattr(loader, "generator", None)
    if generator is not None:
        generator.manual_seed(seed)
    with channels_last(model) as prepare:
        return _train(model, loader, epochs, lr, prepare=prepare, optimizer=optimizer,
                      loss_fn=loss_fn, schedule=schedule, progress=progress)


@contextmanager
def channels_last(model):
    """Run a 2-D convolutional ``model`` in channels-last memory (NHWC) inside the block.

    On one CPU thread PyTorch's NCHW max pooling is about ten times slower than its
    NHWC kernel, a training step of the MNIST example about 1.5 times slower and an
    inference pass over 10 000 digits 1.5 times (measured, torch 2.13, AVX2). The
    values are the same tensors; the weights are handed back in the default layout.
    Yields the function that prepares an input batch for the model: 4-D tensors made
    channels-last when the model was converted (it has 4-D parameters), anything
    else returned as it is.
    """
    import torch

    nhwc = any(p.dim() == 4 for p in model.parameters())

    def prepare(batch):
        if nhwc and batch.dim() == 4:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    if nhwc:
        model.to(memory_format=torch.channels_last)
    try:
        yield prepare
    finally:
        if nhwc:
            model.to(memory_format=torch.contiguous_format)


def _train(model, loader, epochs: int, lr: float, *, prepare, optimizer, loss_fn, schedule,
           progress: bool):
    """:func:`train`'s loop, the model already in its memory layout (``prepare`` puts
    each input batch in it)."""
    import time

    import torch

    with warnings.catch_warnings():
        # tqdm.auto falls back to a text bar in notebooks without ipywidgets; fine.
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm

    opt = (optimizer or torch.optim.Adam)(model.parameters(), lr=lr)
    criterion = loss_fn or torch.nn.CrossEntropyLoss()
    steps = epochs * len(loader)
    scheduler = None
    if schedule == "onecycle":
        # The momentum (Adam's beta1) cycles against the rate only where the optimizer
        # has one: OneCycleLR would refuse an optimizer without, or add momentum to SGD.
        defaults = opt.defaults
        cycle = "betas" in defaults or bool(defaults.get("momentum"))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                        cycle_momentum=cycle)
    history = TrainHistory()
    start = time.perf_counter()
    model.train()
    # One bar for the whole run, refreshed at most ~20 times: readable in a
    # terminal, a notebook, and a captured log (the documentation pages).
    bar = tqdm(
        total=steps, desc="training", disable=not progress, unit="batch",
        miniters=max(1, steps // 20), mininterval=0.5, leave=True,
    )
    with bar:
        for epoch in range(epochs):
            loss, accuracy = _one_epoch(model, loader, opt, criterion, prepare, bar,
                                        epoch + 1, epochs, scheduler)
            history.loss.append(loss)
            history.accuracy.append(accuracy)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def _one_epoch(model, loader, opt, criterion, prepare, bar, epoch: int, epochs: int,
               scheduler=None):
    """Epoch ``epoch`` (from 1): one pass over ``loader``, (mean loss, accuracy); a NaN/inf
    loss is an error. ``scheduler`` (optional) steps after every optimizer step."""
    import torch

    total_loss, correct, seen = 0.0, 0, 0
    for inputs, labels in loader:
        opt.zero_grad()
        outputs = model(prepare(inputs))
        loss = criterion(outputs, labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at epoch {epoch}; "
                "lower the learning rate"
            )
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * len(labels)
        correct += (outputs.argmax(1) == labels).sum().item()
        seen += len(labels)
        bar.set_postfix(epoch=f"{epoch}/{epochs}", loss=f"{total_loss / seen:.4f}", refresh=False)
        bar.update(1)
    return total_loss / seen, correct / seen


def evaluate_torch(model, loader) -> float:
    """Accuracy of ``model`` on ``loader``, as a fraction in [0, 1].

    The model is put in eval mode (dropout off, BatchNorm frozen) and no
    gradients are computed.

    Parameters
    ----------
    model : torch.nn.Module
    loader : iterable of (inputs, labels)

    Returns
    -------
    float
    """
    import torch

    model.eval()
    correct, seen = 0, 0
    with torch.no_grad(), channels_last(model) as prepare:
        for inputs, labels in loader:
            correct += (model(prepare(inputs)).argmax(1) == labels).sum().item()
            seen += len(labels)
    if seen == 0:
        raise ValueError("the evaluation loader is empty")
    return correct / seen


def distillation_set(model, x, *, copies: int = 9, noise: float = 0.2, seed: int = 0,
                     batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Samples and noisy copies of them, labelled by a trained float model.

    Quantization-aware fine-tuning learns little from the true labels once the
    quantized model already fits every training sample (its loss is near zero);
    it learns to follow the float model where their decisions differ when it is
    trained on the neighbourhood of the training set labelled by the float
    model (knowledge distillation with hard labels). No test data are used.

    Parameters
    ----------
    model : torch.nn.Module
        The trained float model (the teacher); it is put in eval mode.
    x : array-like
        Float training inputs, as the model takes them (e.g. ``(N, C, L)`` signals).
    copies : int, default 9
        Noisy copies of each sample (``0``: only ``x``, relabelled).
    noise : float, default 0.2
        Standard deviation of the Gaussian noise added to each copy, in the
        inputs' units (0.2 of the amplitude for z-normalized signals).
    seed : int, default 0
        Seeds the noise.
    batch_size : int, default 1024
        Samples per forward pass of the teacher.

    Returns
    -------
    inputs : numpy.ndarray
        float32 ``((copies + 1) * N, ...)``: ``x`` first, then the copies in order.
    labels : numpy.ndarray
        int64 ``((copies + 1) * N,)``: the teacher's predicted class of each input.

    Raises
    ------
    ValueError
        ``copies < 0``, ``noise < 0`` or an empty ``x``.

    Examples
    --------
    >>> inputs, labels = distillation_set(model, x_train, copies=9)  # doctest: +SKIP
    >>> fine_tune(quantized, lowered.lift(inputs, "nhwc"), labels)   # doctest: +SKIP
    """
    import torch

    x = np.asarray(x, dtype=np.float32)
    if copies < 0 or noise < 0 or len(x) == 0:
        raise ValueError(f"need copies >= 0, noise >= 0 and samples; got copies={copies}, "
                         f"noise={noise}, {len(x)} samples")
    rng = np.random.default_rng(seed)
    noisy = [x + np.float32(noise) * rng.standard_normal(x.shape, dtype=np.float32)
             for _ in range(copies)]
    inputs = np.concatenate([x, *noisy])
    model.eval()
    with torch.no_grad():
        labels = np.concatenate([model(torch.from_numpy(inputs[i:i + batch_size])).argmax(1).numpy()
                                 for i in range(0, len(inputs), batch_size)])
    return inputs, labels.astype(np.int64)


def _KeepBestAgreement(x_val, y_val):
    """A Keras callback: the agreement with the teacher's labels before training and after
    each epoch (``scores``), and the weights of the best (``best``; earliest on ties)."""
    from .backends.keras_cnn2snn.toolchain import _keras

    class KeepBestAgreement(_keras().callbacks.Callback):
        def _judge(self):
            out = self.model.predict(x_val, batch_size=256, verbose=0)
            self.scores.append(float(np.mean(np.argmax(out, axis=-1) == y_val)))
            if len(self.scores) == 1 or self.scores[-1] > max(self.scores[:-1]):
                self.best = self.model.get_weights()

        def on_train_begin(self, logs=None):
            self.scores, self.best = [], None
            self._judge()

        def on_epoch_end(self, epoch, logs=None):
            self._judge()

    return KeepBestAgreement()


def distill_fine_tune(quantized, teacher, x, *, prepare=None, epochs: int = 10,
                      lr: float = 3e-4, copies: int = 9, noise: float = 0.2,
                      batch_size: int = 50, seed: int = 0) -> dict:
    """Fine-tune a 4-bit Keras model on the teacher's labels; keep the epoch that agrees best.

    Quantization-aware fine-tuning on a small data set can drift: on ECG200
    (100 training signals) one seed lost 3 test signals to ten epochs on one
    machine and none on another. Each epoch is therefore judged on *held-out*
    noisy copies of the training inputs (a second :func:`distillation_set`
    with another noise seed, never the test data) by the share of inputs on
    which the 4-bit model agrees with the float teacher; the weights of the
    best epoch — epoch 0, the calibrated model itself, included — are kept.

    Parameters
    ----------
    quantized : tf_keras.Model
        From :func:`akida_workflows.keras_bridge.quantize_4bit`; changed in place.
    teacher : torch.nn.Module
        The trained float model.
    x : numpy.ndarray
        Training inputs as the teacher takes them.
    prepare : callable, optional
        Turns teacher inputs into the Keras model's (e.g. ``lowered.lift(x, "nhwc")``);
        default :func:`akida_workflows.keras_bridge.to_nhwc`.
    epochs, lr, copies, noise, batch_size, seed :
        As for :func:`distillation_set` and
        :func:`akida_workflows.keras_bridge.fine_tune` (one call, all epochs; each
        epoch is judged by a callback).

    Returns
    -------
    dict
        ``agreement`` (per epoch, 0 first), ``best_epoch``, ``relabelled``
        (share of noisy copies whose teacher label differs from their source's).
    """
    from .keras_bridge import fine_tune, to_nhwc

    prepare = prepare or to_nhwc
    x_fit, y_fit = distillation_set(teacher, x, copies=copies, noise=noise, seed=seed)
    x_val, y_val = distillation_set(teacher, x, copies=copies, noise=noise, seed=seed + 10_000)
    x_fit, x_val = prepare(x_fit), prepare(x_val)
    judge = _KeepBestAgreement(x_val, y_val)
    # one fit of all epochs: compiled and traced once (a fit per epoch recompiled the model
    # and retraced training and prediction each time, 3x the work on ECG200)
    fine_tune(quantized, x_fit, y_fit, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
              callbacks=[judge])
    quantized.set_weights(judge.best)
    scores = judge.scores
    relabelled = float(np.mean(y_fit[len(x):] != np.tile(y_fit[:len(x)], copies)))
    return {"agreement": scores, "best_epoch": int(np.argmax(scores)), "relabelled": relabelled}
