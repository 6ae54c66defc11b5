from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from akida_workflows.training import (
    TrainHistory,
    distillation_set,
    evaluate_torch,
    seed_everything,
    train,
)


def _separable(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 4, 4)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


def _loader(seed=0):
    return DataLoader(_separable(), batch_size=32, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def _model():
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))


def test_train_learns_and_records_history():
    seed_everything(0)
    model = _model()
    before = evaluate_torch(model, _loader())
    history = train(model, _loader(), epochs=8, lr=1e-2, seed=0, progress=False)
    assert isinstance(history, TrainHistory)
    assert len(history.loss) == len(history.accuracy) == 8
    assert history.loss[-1] < 0.5 * history.loss[0]
    after = evaluate_torch(model, _loader())
    assert after > 0.9 and after > before
    assert history.seconds > 0
    assert not model.training  # left in eval mode


def test_train_is_deterministic():
    weights = []
    for _ in range(2):
        torch.manual_seed(123)
        model = _model()
        train(model, _loader(), epochs=2, lr=1e-2, seed=7, progress=False)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_train_with_other_optimizer():
    model = _model()
    history = train(model, _loader(), epochs=3, lr=0.1, seed=0, progress=False,
                    optimizer=torch.optim.SGD)
    assert history.loss[-1] < history.loss[0]


class _RecordingAdam(torch.optim.Adam):
    """Adam that records the learning rate of every step it takes."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.rates = []

    def step(self, closure=None):
        self.rates.append(self.param_groups[0]["lr"])
        return super().step(closure)


def test_onecycle_schedule_warms_up_to_lr_then_anneals():
    made = []

    def adam(params, lr):
        made.append(_RecordingAdam(params, lr))
        return made[-1]

    history = train(_model(), _loader(), epochs=4, lr=1e-2, seed=0, progress=False,
                    optimizer=adam, schedule="onecycle")
    rates = np.array(made[0].rates)
    assert len(rates) == 4 * 8  # one rate per optimizer step, over the whole run
    peak = int(np.argmax(rates))
    assert rates.max() == pytest.approx(1e-2, rel=0.01)
    assert 0.2 < peak / len(rates) < 0.4  # OneCycle's default warm-up: 30 % of the steps
    assert np.all(np.diff(rates[:peak + 1]) > 0) and np.all(np.diff(rates[peak:]) < 0)
    assert rates[0] < 1e-3 and rates[-1] < 1e-5
    assert history.loss[-1] < history.loss[0]
    # Without a schedule the rate stays what was asked.
    train(_model(), _loader(), epochs=1, lr=1e-2, seed=0, progress=False, optimizer=adam)
    assert set(made[1].rates) == {1e-2}


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_onecycle_with_sgd_keeps_its_momentum_setting(momentum):
    made = []

    def sgd(params, lr):
        made.append(torch.optim.SGD(params, lr=lr, momentum=momentum))
        return made[-1]

    history = train(_model(), _loader(), epochs=2, lr=0.1, seed=0, progress=False,
                    optimizer=sgd, schedule="onecycle")
    assert history.loss[-1] < history.loss[0]
    # Plain SGD stays plain; SGD with momentum has it cycled (0.85-0.95) against the rate.
    assert made[0].param_groups[0]["momentum"] == pytest.approx(0.95 if momentum else 0.0, abs=0.01)


def test_train_progress_bar_goes_to_stderr(capsys):
    train(_model(), _loader(), epochs=1, lr=1e-2, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "training" in err and "8/8" in err


def test_train_rejects_bad_arguments():
    with pytest.raises(ValueError, match="epochs"):
        train(_model(), _loader(), epochs=0)
    with pytest.raises(ValueError, match="empty"):
        train(_model(), DataLoader(TensorDataset(torch.zeros(0, 16), torch.zeros(0))), epochs=1)
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        train(_model(), _loader(), epochs=1, schedule="cosine")


def test_train_stops_on_non_finite_loss():
    model = _model()
    with torch.no_grad():
        model[1].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(model, _loader(), epochs=1, progress=False)


def test_evaluate_torch_is_a_fraction_in_eval_mode():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.99), nn.Linear(16, 2))
    model.train()
    acc = evaluate_torch(model, _loader())
    assert 0.0 <= acc <= 1.0
    assert not model.training
    # Dropout is off in eval mode, so two evaluations agree.
    assert evaluate_torch(model, _loader()) == acc


def test_distillation_set_labels_noisy_copies_with_the_teacher():
    # teacher: class 1 when the mean of the signal is positive
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        teacher[1].weight.copy_(torch.tensor([[-1.0] * 8, [1.0] * 8]))
        teacher[1].bias.zero_()
    x = np.stack([np.full((1, 8), v, dtype=np.float32) for v in (-1.0, -0.05, 0.05, 1.0)])
    inputs, labels = distillation_set(teacher, x, copies=200, noise=0.5, seed=3)
    assert inputs.shape == (201 * 4, 1, 8) and inputs.dtype == np.float32
    assert labels.dtype == np.int64 and np.array_equal(inputs[:4], x)
    assert labels[:4].tolist() == [0, 0, 1, 1]
    assert np.array_equal(labels, (inputs.reshape(len(inputs), -1).sum(1) > 0).astype(np.int64))
    noise = inputs[4:] - np.tile(x, (200, 1, 1))
    assert abs(noise.std() - 0.5) < 0.02 and abs(noise.mean()) < 0.02
    # the copies near the boundary change class, the far ones keep it
    near = labels[4:].reshape(200, 4)
    assert 0.2 < near[:, 1].mean() < 0.8 and near[:, 0].sum() == 0 and near[:, 3].all()
    again, _ = distillation_set(teacher, x, copies=200, noise=0.5, seed=3)
    assert np.array_equal(again, inputs)
    plain, plain_labels = distillation_set(teacher, x, copies=0)
    assert np.array_equal(plain, x) and plain_labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="copies >= 0"):
        distillation_set(teacher, x, copies=-1)


def test_channels_last_inference_is_the_same_and_hands_the_model_back():
    """``predict`` and ``evaluate_torch`` run 2-D conv nets in NHWC memory (faster on one
    CPU thread): the same outputs as NCHW, and the model's weights back in NCHW after."""
    from akida_workflows.evaluate import predict
    from akida_workflows.training import channels_last

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(8, 4, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 2 * 2, 3)).eval()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    x = np.random.default_rng(0).normal(size=(40, 2, 8, 8)).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    assert reference.std() > 0.1  # outputs that differ from input to input
    np.testing.assert_allclose(predict(model, x, batch_size=16), reference, rtol=1e-5, atol=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())
    labels = torch.from_numpy(reference.argmax(1))
    loader = DataLoader(TensorDataset(torch.from_numpy(x), labels), batch_size=16)
    assert evaluate_torch(model, loader) == 1.0
    batch = torch.from_numpy(x[:2])
    with channels_last(model) as prepare:
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert prepare(batch).is_contiguous(memory_format=torch.channels_last)
        assert not prepare(batch).is_contiguous()
        vectors = torch.zeros(2, 5)
        assert prepare(vectors) is vectors  # only 4-D inputs change layout
    assert model[0].weight.is_contiguous()
    with channels_last(_model()) as prepare:  # no 4-D weights: left as it is
        assert prepare(batch) is batch
