"""A zoo of PyTorch models, compatible or not with Akida, for the report tests.

Two kinds of entries:

- small synthetic models that each show one pattern (``mappable``,
  ``valid_padding``, ``residual_add``, …) on a 1x16x16 input;
- models written the way public code writes them, the kinds users bring to
  an edge chip: the MLPerf-Tiny keyword-spotting DS-CNN, MobileNetV1-0.25 for
  visual wake words, the MLPerf-Tiny ResNet-8, a TEMPONet-style PPG heart-rate
  net (dilated Conv1d), an ECG Conv1d classifier, M5 on raw audio (PyTorch's
  speech-command tutorial), LeNet-5, an MLP, an LSTM and a keyword transformer,
  at small input sizes. They keep the public code's habits: functional
  ``F.relu``/``torch.add``, reused modules, ``x.view``/``torch.squeeze``,
  ``x.shape[-1]``, ``log_softmax`` heads, Kaiming init.

:func:`zoo` builds them all (eval mode, random BatchNorm statistics so folding
mistakes show); :data:`SHAPES` gives each one's input shape (default
:data:`SHAPE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SHAPE = (1, 16, 16)


# --------------------------------------------------------------- synthetic patterns


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


class _ResidualPartial(nn.Module):
    """Converts for Akida 2.0 but does not map entirely: a residual block, then a valid conv."""

    def __init__(self):
        super().__init__()
        self.stem, self.act = nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6()
        self.conv, self.act2 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6()
        self.merge, self.act3 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6()
        self.pool = nn.MaxPool2d(2)
        self.valid, self.act4 = nn.Conv2d(8, 8, 3), nn.ReLU6()
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        x = self.act(self.stem(x))
        x = x + self.act2(self.conv(x))
        x = self.pool(self.act3(self.merge(x)))
        return self.fc(torch.flatten(self.act4(self.valid(x)), 1))


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        seq = x[:, 0]
        out, _ = self.attn(seq, seq, seq)
        return self.fc(out.mean(1))


class _TwoInputs(nn.Module):
    """A model with two inputs (image + side information)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16 * 16 + 4, 10)

    def forward(self, x, extra):
        return self.fc(torch.cat([torch.flatten(F.relu(self.conv(x)), 1), extra], 1))


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


# ------------------------------------------------------------- models users bring


class DSCNN(nn.Module):
    """MLPerf-Tiny keyword spotting DS-CNN (Hello Edge), on 49x10 MFCC frames.

    Input conv (10x4, stride 2) → 4 x [depthwise 3x3 → BN → ReLU → pointwise →
    BN → ReLU] → average pool over the map → Linear, as in the reference
    implementation (fewer filters here).
    """

    def __init__(self, filters: int = 16, num_classes: int = 12):
        super().__init__()
        self.conv1 = nn.Conv2d(1, filters, kernel_size=(10, 4), stride=(2, 2), padding=(5, 1))
        self.bn1 = nn.BatchNorm2d(filters)
        self.relu = nn.ReLU()
        self.dropout1 = nn.Dropout(0.2)
        blocks = []
        for _ in range(4):
            blocks += [
                nn.Conv2d(filters, filters, 3, padding=1, groups=filters, bias=False),
                nn.BatchNorm2d(filters), nn.ReLU(),
                nn.Conv2d(filters, filters, 1, bias=False),
                nn.BatchNorm2d(filters), nn.ReLU(),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.dropout2 = nn.Dropout(0.4)
        self.avgpool = nn.AvgPool2d((25, 5))
        self.fc = nn.Linear(filters, num_classes)

    def forward(self, x):
        x = self.dropout1(self.relu(self.bn1(self.conv1(x))))
        x = self.blocks(x)
        x = self.avgpool(self.dropout2(x))
        x = torch.squeeze(x)
        return self.fc(x)


class _ConvBNReLU(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, groups=groups, bias=False)
        nn.init.kaiming_normal_(self.conv.weight)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class MobileNetV1(nn.Module):
    """MobileNetV1 (width 0.25) for visual wake words (person / no person).

    The MLPerf-Tiny VWW layout (depthwise → BN → ReLU → pointwise → BN → ReLU,
    stride-2 depthwise down-sampling, average pool, Linear) on 3x64x64 images
    with the later 128-channel stage shortened.
    """

    def __init__(self, alpha: float = 0.25, num_classes: int = 2):
        super().__init__()

        def c(n):
            return max(8, int(n * alpha))

        plan = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
                (256, 512, 2), (512, 512, 1), (512, 1024, 2)]
        layers = [_ConvBNReLU(3, c(32), 3, stride=2)]
        for cin, cout, stride in plan:
            layers += [_ConvBNReLU(c(cin), c(cin), 3, stride=stride, groups=c(cin)),
                       _ConvBNReLU(c(cin), c(cout), 1)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AvgPool2d(2)
        self.classifier = nn.Linear(c(1024), num_classes)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        x = torch.flatten(x, 1)
        return self.classifier(x)


class ResNet8(nn.Module):
    """MLPerf-Tiny ResNet-8 for CIFAR-10 (3x32x32), functional ``torch.add`` shortcuts."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.inputblock = _ConvBNReLU(3, 16, 3)
        self.convblock1 = _ConvBNReLU(16, 16, 3)
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.convblock2 = _ConvBNReLU(16, 32, 3, stride=2)
        self.conv2y = nn.Conv2d(32, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv2x = nn.Conv2d(16, 32, 1, stride=2)
        self.convblock3 = _ConvBNReLU(32, 64, 3, stride=2)
        self.conv3y = nn.Conv2d(64, 64, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(64)
        self.conv3x = nn.Conv2d(32, 64, 1, stride=2)
        self.avgpool = nn.AvgPool2d(8)
        self.out = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        x = self.inputblock(x)
        y = self.bn1(self.conv1(self.convblock1(x)))
        x = self.relu(torch.add(x, y))
        y = self.bn2(self.conv2y(self.convblock2(x)))
        x = self.relu(torch.add(self.conv2x(x), y))
        y = self.bn3(self.conv3y(self.convblock3(x)))
        x = self.relu(torch.add(self.conv3x(x), y))
        x = torch.flatten(self.avgpool(x), 1)
        return self.out(x)


class TEMPONet(nn.Module):
    """TEMPONet-style PPG heart-rate regressor (4 channels: PPG + 3-axis accelerometer).

    Dilated Conv1d blocks (conv → ReLU → BN), conv → average pool → BN → ReLU
    blocks, and Linear → ReLU → BN regressors, on 4x64 windows (fewer channels).
    """

    def __init__(self):
        super().__init__()

        def temporal(cin, cout, k, dilation):
            return nn.Sequential(nn.Conv1d(cin, cout, k, dilation=dilation, padding="same"),
                                 nn.ReLU(), nn.BatchNorm1d(cout))

        def block(cin, cout, k):
            return nn.Sequential(nn.Conv1d(cin, cout, k, padding=k // 2), nn.AvgPool1d(2),
                                 nn.BatchNorm1d(cout), nn.ReLU())

        self.tcb0 = temporal(4, 16, 3, 2)
        self.cb0 = block(16, 16, 5)
        self.tcb1 = temporal(16, 32, 3, 4)
        self.cb1 = block(32, 32, 5)
        self.regr = nn.Sequential(nn.Linear(32 * 16, 32), nn.ReLU(), nn.BatchNorm1d(32))
        self.out_neuron = nn.Linear(32, 1)

    def forward(self, x):
        x = self.cb1(self.tcb1(self.cb0(self.tcb0(x))))
        x = x.flatten(1)
        return self.out_neuron(self.regr(x))


class TEMPONetPPGDalia(nn.Module):
    """TEMPONet as eml-eda/pytorch-benchmarks publishes it for PPG-Dalia (4 x 256 windows).

    Temporal blocks (dilated Conv1d, padding 'same' → ReLU → BN) with dilations 2, 2, 4, 4,
    8, 8 (3 taps spanning 5, 9 and 17 samples), conv blocks (Conv1d → AvgPool1d(2) → BN →
    ReLU, the last two strided 2 and 4) and a Linear → ReLU → BN regressor.
    """

    def __init__(self):
        super().__init__()

        def temporal(cin, cout, dilation):
            return nn.Sequential(nn.Conv1d(cin, cout, 3, dilation=dilation, padding="same"),
                                 nn.ReLU(), nn.BatchNorm1d(cout))

        def conv(cin, cout, k, stride, pad):
            return nn.Sequential(nn.Conv1d(cin, cout, k, stride=stride, padding=pad),
                                 nn.AvgPool1d(2, 2), nn.BatchNorm1d(cout), nn.ReLU())

        ch = [32, 32, 64, 64, 64, 128, 128, 128, 128, 256, 128]
        self.tcb00, self.tcb01 = temporal(4, ch[0], 2), temporal(ch[0], ch[1], 2)
        self.cb0 = conv(ch[1], ch[2], 5, 1, 2)
        self.tcb10, self.tcb11 = temporal(ch[2], ch[3], 4), temporal(ch[3], ch[4], 4)
        self.cb1 = conv(ch[4], ch[5], 5, 2, 2)
        self.tcb20, self.tcb21 = temporal(ch[5], ch[6], 8), temporal(ch[6], ch[7], 8)
        self.cb2 = conv(ch[7], ch[8], 5, 4, 4)
        self.regr0 = nn.Sequential(nn.Linear(ch[8] * 4, ch[9]), nn.ReLU(), nn.BatchNorm1d(ch[9]))
        self.regr1 = nn.Sequential(nn.Linear(ch[9], ch[10]), nn.ReLU(), nn.BatchNorm1d(ch[10]))
        self.out_neuron = nn.Linear(ch[10], 1)

    def forward(self, x):
        x = self.cb0(self.tcb01(self.tcb00(x)))
        x = self.cb1(self.tcb11(self.tcb10(x)))
        x = self.cb2(self.tcb21(self.tcb20(x)))
        return self.out_neuron(self.regr1(self.regr0(x.flatten(1))))


class ECGNet(nn.Module):
    """1-D CNN heartbeat classifier (MIT-BIH style, 1x128 beats), one activation module reused."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv1d(1, 16, 7, padding=3)
        self.bn1 = nn.BatchNorm1d(16)
        self.conv2 = nn.Conv1d(16, 32, 5, padding=2)
        self.bn2 = nn.BatchNorm1d(32)
        self.conv3 = nn.Conv1d(32, 32, 3, padding=1)
        self.bn3 = nn.BatchNorm1d(32)
        self.acc = nn.ReLU()
        self.pool = nn.MaxPool1d(2)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.pool(self.acc(self.bn1(self.conv1(x))))
        x = self.pool(self.acc(self.bn2(self.conv2(x))))
        x = self.acc(self.bn3(self.conv3(x)))
        x = self.gap(x).view(x.size(0), -1)
        return self.fc(x)


class M5(nn.Module):
    """M5 raw-audio network of PyTorch's speech-command tutorial (8 kHz, 1 s)."""

    def __init__(self, n_input=1, n_output=35, stride=16, n_channel=8):
        super().__init__()
        self.conv1 = nn.Conv1d(n_input, n_channel, kernel_size=80, stride=stride)
        self.bn1 = nn.BatchNorm1d(n_channel)
        self.pool1 = nn.MaxPool1d(4)
        self.conv2 = nn.Conv1d(n_channel, n_channel, kernel_size=3)
        self.bn2 = nn.BatchNorm1d(n_channel)
        self.pool2 = nn.MaxPool1d(4)
        self.conv3 = nn.Conv1d(n_channel, 2 * n_channel, kernel_size=3)
        self.bn3 = nn.BatchNorm1d(2 * n_channel)
        self.pool3 = nn.MaxPool1d(4)
        self.conv4 = nn.Conv1d(2 * n_channel, 2 * n_channel, kernel_size=3)
        self.bn4 = nn.BatchNorm1d(2 * n_channel)
        self.pool4 = nn.MaxPool1d(4)
        self.fc1 = nn.Linear(2 * n_channel, n_output)

    def forward(self, x):
        x = self.pool1(F.relu(self.bn1(self.conv1(x))))
        x = self.pool2(F.relu(self.bn2(self.conv2(x))))
        x = self.pool3(F.relu(self.bn3(self.conv3(x))))
        x = self.pool4(F.relu(self.bn4(self.conv4(x))))
        x = F.avg_pool1d(x, x.shape[-1])
        x = x.permute(0, 2, 1)
        x = self.fc1(x)
        return F.log_softmax(x, dim=2)


class LeNet5(nn.Module):
    """LeNet-5 as in PyTorch's classifier tutorial: one pooling module used twice."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class MLP(nn.Module):
    """Multi-layer perceptron on flattened 16x16 images."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(256, 64), nn.ReLU(), nn.Dropout(0.2),
                                    nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.layers(x)


class LSTMKWS(nn.Module):
    """LSTM keyword spotter over 49 MFCC frames (10 coefficients each)."""

    def __init__(self, hidden=32, num_classes=12):
        super().__init__()
        self.lstm = nn.LSTM(input_size=10, hidden_size=hidden, num_layers=1, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = x.squeeze(1)  # (N, 49, 10): time-major sequence of frames
        out, (h, c) = self.lstm(x)
        return self.fc(out[:, -1, :])


class _KWTAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        attn = torch.matmul(q, k.transpose(-1, -2)).mul(self.scale).softmax(dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d)
        return self.to_out(out)


class KWT(nn.Module):
    """Keyword Transformer (Berg et al.), one encoder layer, on 49x10 MFCC frames."""

    def __init__(self, dim=16, heads=2, mlp_dim=32, num_classes=12, frames=49, mfcc=10):
        super().__init__()
        self.to_patch_embedding = nn.Linear(mfcc, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, frames + 1, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _KWTAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def forward(self, x):
        x = self.to_patch_embedding(x.squeeze(1))
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embedding
        x = x + self.attn(self.norm1(x))
        x = x + self.ff(self.norm2(x))
        return self.mlp_head(x[:, 0])


#: Input shape (channels first, no batch) of each model that does not take SHAPE.
SHAPES = {
    "kws_dscnn": (1, 49, 10),
    "mobilenet_v1_vww": (3, 64, 64),
    "resnet8": (3, 32, 32),
    "ppg_temponet": (4, 64),
    "ecg_conv1d": (1, 128),
    "m5_raw_audio": (1, 8000),
    "lenet5": (1, 32, 32),
    "lstm_kws": (1, 49, 10),
    "keyword_transformer": (1, 49, 10),
}

#: The models written as public code writes them (the others are one-pattern probes).
USER_MODELS = ("kws_dscnn", "mobilenet_v1_vww", "resnet8", "ppg_temponet", "ecg_conv1d",
               "m5_raw_audio", "lenet5", "mlp", "lstm_kws", "keyword_transformer")


def input_shape(name: str) -> tuple[int, ...]:
    """Input shape of zoo model ``name`` (channels first, no batch axis)."""
    return SHAPES.get(name, SHAPE)


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
        "residual_partial": _ResidualPartial(),
        "lstm": _LSTMNet(),
        "attention": _Attention(),
        "tanh_inside": _cnn(mid=nn.Tanh()),
        "kws_dscnn": DSCNN(),
        "mobilenet_v1_vww": MobileNetV1(),
        "resnet8": ResNet8(),
        "ppg_temponet": TEMPONet(),
        "ecg_conv1d": ECGNet(),
        "m5_raw_audio": M5(),
        "lenet5": LeNet5(),
        "mlp": MLP(),
        "lstm_kws": LSTMKWS(),
        "keyword_transformer": KWT(),
    }
    for model in models.values():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                with torch.no_grad():
                    m.running_mean.uniform_(-0.3, 0.3)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        model.eval()
    return models


def two_inputs() -> nn.Module:
    """A model whose forward takes two tensors (not in :func:`zoo`: Akida takes one input)."""
    torch.manual_seed(0)
    return _TwoInputs().eval()


def convert_model(model, input_shape, target, *, samples=None, n: int = 16):
    """The toolchain, strictly (no stand-ins): ``(akida_model, "")`` or ``(None, why)``.

    Akida 2.0: export → quantize_onnx → to_akida. Akida 1.0: fold_batchnorm(strict) →
    to_keras → quantize_4bit → convert_keras. A 1-D model is lowered first to its exact
    2-D form (``lowering.prepare``, as the CLI does); a refusal there is the verdict.
    """
    import contextlib
    import io
    import tempfile
    import warnings
    from pathlib import Path

    import numpy as np

    from akida_workflows._quiet import quiet_toolchain_logs

    if samples is None:
        samples = np.random.default_rng(0).uniform(-1, 1, (n, *input_shape)).astype(np.float32)
    try:
        with quiet_toolchain_logs(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            from akida_workflows.lowering import prepare, prepare_samples

            model, input_shape = prepare(model, input_shape, target)
            samples = prepare_samples(samples, input_shape)
            if target == "akida2":
                from akida_workflows.convert import quantize_onnx, to_akida
                from akida_workflows.export import export_onnx

                with tempfile.TemporaryDirectory() as tmp:
                    exported = export_onnx(model, torch.from_numpy(samples[:1]),
                                           Path(tmp) / "m.onnx")
                    return to_akida(quantize_onnx(exported, samples)), ""
            from akida_workflows.folding import fold_batchnorm
            from akida_workflows.keras_bridge import (
                convert_keras,
                quantize_4bit,
                to_keras,
                to_nhwc,
            )

            folded = fold_batchnorm(model, strict=True)
            keras_model = to_keras(folded, input_shape)
            return convert_keras(quantize_4bit(keras_model,
                                               to_nhwc(samples, flip=keras_model))), ""
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _devices() -> dict:
    from akida_workflows.targets import TARGETS

    return {name: lim.device for name, lim in TARGETS.items()}


DEVICES = _devices()


def hw_only(akida_model, target) -> tuple[bool, str]:
    """``map(device, hw_only=True)`` on a copy: the judge."""
    import akida

    try:
        akida.Model(layers=list(akida_model.layers)).map(getattr(akida, DEVICES[target])(),
                                                        hw_only=True)
        return True, ""
    except Exception as exc:
        return False, str(exc)


def real_toolchain(model, input_shape, target, *, samples=None, n: int = 16):
    """``(True, "")`` when the model converts and maps entirely in hardware, else ``(False, why)``.

    The toolchain is deterministic, so one model (same code, hyperparameters, weights,
    modes, input shape, target and samples: :func:`fingerprint`) is judged once per test
    run, whichever test asks first (several rules' fixes are the same model); the verdict
    is kept in :func:`shared_cache` for every worker. A model torch.fx cannot trace has
    no fingerprint and is always converted.

    Across runs, a verdict is replayed from :data:`VERDICT_RECORD` only when the record
    was made by this very code and toolchain (:func:`toolchain_stamp`: the installed
    library's source, this file, and the versions of the toolchain's packages) for this
    very model (its fingerprint); any change to either runs the toolchain again.
    ``--live-toolchain`` ignores the record (and then checks it against every verdict
    computed), ``--record-verdicts`` rewrites it (``tests/conftest.py``).
    """
    import json

    key = fingerprint(model, input_shape, target, samples, n)
    if key is None:
        return _judge(model, input_shape, target, samples, n)
    if key not in _VERDICTS:
        folder = shared_cache()
        (folder / f"used-{key}").touch()
        recorded = recorded_verdicts().get(key)
        if recorded is not None:
            _VERDICTS[key] = (bool(recorded[0]), str(recorded[1]))
        else:
            path = folder / f"verdict-{key}.json"
            with _locked(f"verdict-{key}"):
                if not path.exists():
                    ok, why = _judge(model, input_shape, target, samples, n)
                    path.write_text(json.dumps([bool(ok), str(why)[:_WHY_CHARS]]))
                ok, why = json.loads(path.read_text())
            _VERDICTS[key] = (ok, why)
    return _VERDICTS[key]


_VERDICTS: dict = {}
_WHY_CHARS = 1500  # of the toolchain's message kept with a verdict (failure messages only)
VERDICT_RECORD = Path(__file__).with_name("toolchain_verdicts.json")
TOOLCHAIN_PACKAGES = ("akida", "cnn2snn", "quantizeml", "tensorflow", "tf-keras", "keras",
                      "torch", "onnx", "onnxruntime", "onnxscript", "numpy")


def toolchain_stamp() -> dict:
    """What a verdict depends on besides the model: the code that converts and the toolchain.

    The digest of every ``.py`` file of the installed akida_workflows (the wheel in
    ``nox -s tests``, the checkout in an editable install) and of this file (the
    strict conversion :func:`convert_model` and the judge), and the installed versions
    of :data:`TOOLCHAIN_PACKAGES`.
    """
    from importlib import metadata

    import akida_workflows

    versions = {}
    for package in TOOLCHAIN_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"code": code_digest(Path(akida_workflows.__file__).parent, Path(__file__)),
            "versions": versions}


def code_digest(package: Path, *files: Path) -> str:
    """A digest of every ``.py`` file under ``package`` (names and bytes) and of ``files``."""
    import hashlib

    code = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        code.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    for path in files:
        code.update(b"\0" + path.read_bytes())
    return code.hexdigest()[:24]


def recorded_verdicts(path: Path | None = None) -> dict:
    """The recorded verdicts that may be replayed in this run: ``{fingerprint: [ok, why]}``.

    Empty when ``AW_TOOLCHAIN_LIVE`` is set, when there is no record, or when the record's
    stamp is not :func:`toolchain_stamp` (other library code, another zoo.py, another
    toolchain version): then every verdict is computed.
    """
    import json
    import os

    path = path or VERDICT_RECORD
    if path not in _RECORDS:
        verdicts = {}
        if not os.environ.get("AW_TOOLCHAIN_LIVE") and path.exists():
            record = json.loads(path.read_text())
            if record.get("stamp") == toolchain_stamp():
                verdicts = record.get("verdicts", {})
        _RECORDS[path] = verdicts
    return _RECORDS[path]


_RECORDS: dict = {}


def verdict_run_summary(folder: Path, path: Path | None = None) -> dict:
    """The toolchain verdicts a finished run used, computed and replayed (from its
    :func:`shared_cache`), and any disagreement between a computed one and the record."""
    import json

    path = path or VERDICT_RECORD
    used = sorted(p.name[len("used-"):] for p in folder.glob("used-*"))
    computed = {p.name[len("verdict-"):-len(".json")]: json.loads(p.read_text())
                for p in folder.glob("verdict-*.json")}
    record = json.loads(path.read_text()) if path.exists() else {}
    current = record.get("stamp") == toolchain_stamp()
    old = record.get("verdicts", {}) if current else {}  # a stale record says nothing
    disagree = sorted(k for k, v in computed.items() if k in old and bool(old[k][0]) != v[0])
    return {"used": used, "computed": computed, "replayed": len(set(used) - set(computed)),
            "current": current, "disagree": disagree, "old": old}


def write_verdict_record(summary: dict, path: Path | None = None) -> int:
    """Rewrite the record with every verdict this run used (computed or replayed), under
    today's stamp. A record of the same stamp keeps its other verdicts (a run of some
    files adds to it); under a new stamp only this run's verdicts are kept (the others
    would never be replayed). Returns how many it holds."""
    import json

    path = path or VERDICT_RECORD
    verdicts = dict(summary["old"]) if summary["current"] else {}
    for key in summary["used"]:
        verdict = summary["computed"].get(key) or summary["old"].get(key)
        if verdict is None:  # replayed from a record this run did not read: cannot happen
            raise RuntimeError(f"no verdict for {key}")
        verdicts[key] = [bool(verdict[0]), str(verdict[1])]
    head = json.dumps({
        "about": "Toolchain verdicts (converts and maps entirely in hardware?) of the test "
                 "models, keyed by tests/zoo.py's fingerprint; replayed only under this stamp. "
                 "Rewritten by `nox -s tests -- --record-verdicts`.",
        "stamp": toolchain_stamp()}, indent=1)[:-2]
    rows = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(verdicts.items()))
    path.write_text(f'{head},\n"verdicts": {{\n{rows}\n}}\n}}\n')
    return len(verdicts)


def _judge(model, input_shape, target, samples, n):
    akida_model, why = convert_model(model, input_shape, target, samples=samples, n=n)
    if akida_model is None:
        return False, why
    return hw_only(akida_model, target)


def fingerprint(model, input_shape, target, samples=None, n: int = 16) -> str | None:
    """A digest of everything the toolchain's verdict on ``model`` depends on, or None.

    The forward code as torch.fx traces it (custom modules' code and constants inlined),
    every module's repr (types and hyperparameters) and train/eval mode, every
    parameter and buffer, the input shape, the target and the calibration samples.
    """
    import hashlib

    import numpy as np

    try:
        code = torch.fx.symbolic_trace(model).code
    except Exception:
        return None
    digest = hashlib.sha256()
    digest.update(code.encode())
    digest.update(repr(model).encode())
    digest.update(repr([(name, m.training) for name, m in model.named_modules()]).encode())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode() + repr(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr((tuple(input_shape), target, n)).encode())
    if samples is not None:
        samples = np.ascontiguousarray(samples)
        digest.update(str(samples.dtype).encode() + repr(samples.shape).encode())
        digest.update(samples.tobytes())
    return digest.hexdigest()[:24]


@dataclass
class CliRun:
    """``akida-workflows convert`` of one zoo model, in process: what it printed and wrote."""

    code: int
    out: str
    err: str
    fbz: object  # pathlib.Path of the written .fbz, or None
    seconds: float

    @property
    def akida_model(self):
        import akida

        return akida.Model(str(self.fbz)) if self.fbz is not None else None


_CLI_RUNS: dict = {}
_CLI_DIR: list = []


def shared_cache() -> Path:
    """The folder the zoo's conversions and reports are kept in for the whole test run.

    ``tests/conftest.py`` makes one per run (``AW_ZOO_CACHE``) that every
    pytest-xdist worker shares, so that each zoo model is converted and checked
    once per run whichever worker's test asks first; alone, a temporary folder.
    """
    import os
    import tempfile

    folder = os.environ.get("AW_ZOO_CACHE")
    if folder:
        return Path(folder)
    if not _CLI_DIR:
        _CLI_DIR.append(tempfile.TemporaryDirectory(prefix="zoo_cli_"))
    return Path(_CLI_DIR[0].name)


def _locked(key: str):
    """An inter-process lock on ``key`` in :func:`shared_cache` (one worker computes it)."""
    from filelock import FileLock

    return FileLock(str(shared_cache() / f"{key}.lock"))


def zoo_cli_convert(name: str, target: str, n: int = 16) -> CliRun:
    """``akida-workflows convert`` of zoo model ``name``, once per test run.

    The one conversion of each zoo model that the report tests share
    (:func:`zoo_conversion` loads its .fbz), kept in :func:`shared_cache` for
    every worker. ``n`` random samples in [-1, 1] (``(N, C, L)`` for 1-D models).
    When the conversion fails, the CLI prints the compatibility report: the
    run's :func:`zoo_report` stands in for ``check_compatibility`` so the check
    is not run twice.
    """
    import contextlib
    import io
    import json
    import time
    from unittest import mock

    import numpy as np

    from akida_workflows import compat
    from akida_workflows.cli import main

    key = (name, target)
    if key in _CLI_RUNS:
        return _CLI_RUNS[key]
    work = shared_cache()
    fbz = work / f"{name}_{target}.fbz"
    record = work / f"{name}_{target}.cli.json"
    with _locked(f"{name}_{target}.cli"):
        if not record.exists():
            model_path = work / f"{name}.pt"
            torch.save(zoo()[name], model_path)
            x = np.random.default_rng(0).uniform(-1, 1, (n, *input_shape(name)))
            np.save(work / f"{name}.npy", x.astype(np.float32))
            try:  # the report first: the CLI prints it when the conversion fails
                zoo_report(name, target)
            except Exception:
                pass

            def cached_report(*args, **kwargs):
                return zoo_report(name, target)

            out, err = io.StringIO(), io.StringIO()
            start = time.perf_counter()
            with mock.patch.object(compat, "check_compatibility", cached_report), \
                    contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["convert", str(model_path), "--trust-pickle", "--samples",
                             str(work / f"{name}.npy"), "--target", target, "-o", str(fbz)])
            record.write_text(json.dumps({
                "code": code, "out": out.getvalue(), "err": err.getvalue(),
                "fbz": code == 0 and fbz.exists(), "seconds": time.perf_counter() - start}))
        kept = json.loads(record.read_text())
    _CLI_RUNS[key] = CliRun(kept["code"], kept["out"], kept["err"],
                            fbz if kept["fbz"] else None, kept["seconds"])
    return _CLI_RUNS[key]


def zoo_conversion(name: str, target: str):
    """``(akida_model, "")`` or ``(None, why)`` for zoo model ``name``, once per session.

    The model the CLI's ``convert`` wrote (:func:`zoo_cli_convert`): the real
    toolchain without stand-ins (1-D models lowered first, as the CLI does).
    """
    run = zoo_cli_convert(name, target)
    if run.fbz is None:
        return None, f"exit {run.code}: {run.err.strip()[-2000:]}"
    return run.akida_model, ""


_REPORTS: dict = {}
REPORT_SECONDS: dict = {}  # (name, target): seconds check_compatibility took


def zoo_report(name: str, target: str):
    """check_compatibility of zoo model ``name`` (16 random samples), once per test run.

    Kept (pickled) in :func:`shared_cache` for every worker, with the seconds it took.
    """
    import pickle
    import time

    import numpy as np

    from akida_workflows.compat import check_compatibility

    if (name, target) not in _REPORTS:
        path = shared_cache() / f"{name}_{target}.report.pkl"
        with _locked(f"{name}_{target}.report"):
            if not path.exists():
                x = np.random.default_rng(0).uniform(-1, 1, (16, *input_shape(name)))
                start = time.perf_counter()
                try:
                    result = check_compatibility(zoo()[name], input_shape(name), target,
                                                 samples=x.astype(np.float32))
                except Exception as exc:  # e.g. a 1-D model past the target's limits once lowered
                    result = exc
                seconds = time.perf_counter() - start
                try:
                    data = pickle.dumps((result, seconds))
                except Exception:  # an exception that does not pickle: keep it in this worker
                    _REPORTS[name, target], REPORT_SECONDS[name, target] = result, seconds
                else:
                    path.write_bytes(data)
            if (name, target) not in _REPORTS:
                _REPORTS[name, target], REPORT_SECONDS[name, target] = pickle.loads(
                    path.read_bytes())
    if isinstance(_REPORTS[name, target], Exception):
        raise _REPORTS[name, target]
    return _REPORTS[name, target]
