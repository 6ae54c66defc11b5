"""A zoo of small PyTorch models, compatible or not with Akida, for the compat tests."""

from __future__ import annotations

import torch
from torch import nn

SHAPE = (1, 16, 16)


class _LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(16, 8, batch_first=True)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        out, _ = self.lstm(x[:, 0])
        return self.fc(out[:, -1])


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.act = nn.ReLU6()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.act2 = nn.ReLU6()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 16 * 16 // 4, 10)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = self.act(self.stem(x))
        x = x + self.act2(self.conv(x))
        return self.fc(self.flatten(self.pool(x)))


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        seq = x[:, 0]
        out, _ = self.attn(seq, seq, seq)
        return self.fc(out.mean(1))


def _cnn(act=nn.ReLU6, mid=None, head=None, second_padding=1, pool_last=False, dense_in=None,
         bn=None):
    layers = [nn.Conv2d(1, 8, 3, padding=1)]
    if bn == "before":
        layers.append(nn.BatchNorm2d(8))
    layers += [act(), nn.MaxPool2d(2)]
    if bn == "after":
        layers.append(nn.BatchNorm2d(8))
    if mid is not None:
        layers.append(mid)
    size = 8 if second_padding else 6
    layers += [nn.Conv2d(8, 8, 3, padding=second_padding), act()]
    if pool_last:
        layers.append(nn.MaxPool2d(2))
        size //= 2
    layers += [nn.Flatten(), nn.Linear(dense_in or 8 * size * size, 10)]
    if head is not None:
        layers.append(head)
    return nn.Sequential(*layers)


def _wide():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU6(), nn.Flatten(),
                         nn.Linear(16 * 16 * 16, 10))


def _depthwise():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(),
                         nn.Conv2d(8, 16, 1), nn.ReLU6(), nn.Flatten(), nn.Linear(16 * 64, 10))


def zoo() -> dict:
    torch.manual_seed(0)
    models = {
        "mappable": _cnn(),
        "bn_before_activation": _cnn(bn="before"),
        "bn_after_activation": _cnn(bn="after"),
        "valid_padding": _cnn(second_padding=0),
        "pooled_last_conv": _cnn(pool_last=True),
        "dense_over_2048": _wide(),
        "unbounded_relu": _cnn(act=nn.ReLU),
        "gelu": _cnn(act=nn.GELU),
        "sigmoid_inside": _cnn(mid=nn.Sigmoid()),
        "softmax_head": _cnn(head=nn.Softmax(dim=1)),
        "depthwise_separable": _depthwise(),
        "residual_add": _Residual(),
        "lstm": _LSTMNet(),
        "attention": _Attention(),
        "tanh_inside": _cnn(mid=nn.Tanh()),
    }
    for model in models.values():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.3, 0.3)
                    m.running_var.uniform_(0.5, 2.0)
        model.eval()
    return models
