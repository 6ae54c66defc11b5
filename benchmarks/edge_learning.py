"""Akida 1.0 edge learning: few-shot accuracy on classes a PyTorch backbone never saw.

Usage: ``python benchmarks/edge_learning.py [--seen 5] [--epochs 3] [--draws 5]
[--fine-tune-epochs 1] [--out docs/results]``

The pipeline of the edge-learning example, measured on more test images and
with the quantization-aware fine-tuning the example leaves out: a small CNN
trained in PyTorch on the MNIST digits ``0 .. seen-1``; converted for the
AKD1000 with 1-bit features (``quantize_4bit(..., feature_bits=1)``), once
calibrated only and once fine-tuned; an ``akida_workflows.edge`` learning layer
that learns all ten digits from 1, 2, 5 and 10 examples per class (fixed random
draws), against the nearest class mean of the same examples on the float
PyTorch features and on the 1-bit features. Writes ``edge_learning.json`` (the
format of ``results_io.py``) into ``--out``; the site's Results page renders it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_result  # noqa: E402

SHOTS = (1, 2, 5, 10)


def backbone_model(seen: int):
    from torch import nn

    features = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU6(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 256), nn.ReLU6())
    return features, nn.Sequential(features, nn.Linear(256, seen))


def few_shot(backbone, x_pool, y_pool, x_test, y_test, float_pool, float_test, args):
    """{method: (draws, shots, 2) accuracies on seen / unseen}, learning seconds, samples."""
    from akida_workflows import edge

    binary_pool, binary_test = edge.features(backbone, x_pool), edge.features(backbone, x_test)
    num_weights = edge.choose_num_weights(binary_pool[:256])
    seen = y_test < args.seen
    out = {m: np.zeros((args.draws, len(SHOTS), 2)) for m in ("akida", "float", "binary")}
    seconds, learned = 0.0, 0
    for draw in range(args.draws):
        for j, shots in enumerate(SHOTS):
            chosen = edge.few_shot_indices(y_pool, shots, range(10), seed=draw)
            model = edge.to_edge_model(backbone, 10, args.neurons_per_class, num_weights,
                                       seed=draw)
            seconds += edge.learn(model, x_pool[chosen], y_pool[chosen])
            learned += len(chosen)
            for method, predicted in (
                    ("akida", model.predict_classes(x_test, num_classes=10)),
                    ("float", edge.nearest_class_mean(float_pool[chosen], y_pool[chosen],
                                                      float_test)),
                    ("binary", edge.nearest_class_mean(binary_pool[chosen], y_pool[chosen],
                                                       binary_test))):
                right = predicted == y_test
                out[method][draw, j] = right[seen].mean(), right[~seen].mean()
    return out, seconds, learned, num_weights, model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seen", type=int, default=5, help="digits 0..seen-1 train the backbone")
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=4000,
                        help="training images the few-shot examples are drawn from")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--neurons-per-class", type=int, default=3)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "results",
                        help="folder of the result file (default: docs/results)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.simplefilter("ignore")
    import torch

    from akida_workflows.datasets import Dataset, load_mnist, preprocess, to_torch_loaders
    from akida_workflows.deploy import map_report
    from akida_workflows.keras_bridge import (
        convert_keras,
        fine_tune,
        quantize_4bit,
        to_keras,
        to_nhwc,
    )
    from akida_workflows.training import seed_everything, train

    start = time.perf_counter()
    seed_everything(0)
    torch.set_num_threads(1)
    data = load_mnist()
    x_pool, y_pool = data.x_train[:args.pool], data.y_train[:args.pool]
    is_seen = y_pool < args.seen
    subset = Dataset(data.name, x_pool[is_seen][:args.train_images],
                     y_pool[is_seen][:args.train_images], data.x_test[:0], data.y_test[:0],
                     data.source, data.description, data.classes[:args.seen])
    x_test, y_test = preprocess(data.x_test[:args.test_images]), data.y_test[:args.test_images]
    features, model = backbone_model(args.seen)
    train(model, to_torch_loaders(subset, batch_size=64)[0], epochs=args.epochs, lr=2e-3,
          seed=0, progress=False)
    model.eval()
    with torch.no_grad():
        float_pool = features(torch.from_numpy(preprocess(x_pool))).numpy()
        float_test = features(torch.from_numpy(x_test)).numpy()
    pool_nhwc, test_nhwc = to_nhwc(preprocess(x_pool)), to_nhwc(x_test)
    quantized = quantize_4bit(to_keras(model, (1, 28, 28)), pool_nhwc[is_seen][:256],
                              feature_bits=1, batch_size=32)
    rows = []
    for variant in ("calibrated", "fine-tuned"):
        if variant == "fine-tuned":
            fine_tune(quantized, pool_nhwc[is_seen][:args.train_images],
                      y_pool[is_seen][:args.train_images], epochs=args.fine_tune_epochs, seed=0)
            variant = f"fine-tuned {args.fine_tune_epochs} epoch(s)"
        backbone = convert_keras(quantized)
        backbone.pop_layer()
        acc, seconds, learned, num_weights, last = few_shot(
            backbone, pool_nhwc, y_pool, test_nhwc, y_test, float_pool, float_test, args)
        mapping = map_report(last, "AKD1000")
        for j, shots in enumerate(SHOTS):
            rows.append({
                "backbone": variant, "examples per class": shots,
                "Akida seen": acc["akida"][:, j, 0].mean(),
                "Akida unseen": acc["akida"][:, j, 1].mean(),
                "Akida unseen (worst draw)": acc["akida"][:, j, 1].min(),
                "Akida unseen (best draw)": acc["akida"][:, j, 1].max(),
                "float NCM seen": acc["float"][:, j, 0].mean(),
                "float NCM unseen": acc["float"][:, j, 1].mean(),
                "1-bit NCM unseen": acc["binary"][:, j, 1].mean(),
                "weights per neuron": num_weights,
                "learning (ms per example)": 1000 * seconds / learned,
                "in hardware": mapping.hw_fraction,
                "program (bytes)": mapping.program_bytes,
            })
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()})
    percent = {c: "percent" for c in rows[0] if c.endswith(("seen", "draw)"))}
    path = write_result(
        args.out / "edge_learning.json", rows, benchmark="edge_learning",
        title="Edge learning on the AKD1000: new classes from a few examples",
        data=f"{data.description}; backbone trained on {len(subset.y_train)} images of digits "
             f"0-{args.seen - 1} for {args.epochs} epochs; examples drawn from the first "
             f"{args.pool} training images, tested on {len(y_test)} test images",
        notes=(f"Mean over {args.draws} fixed random draws (seeds 0..{args.draws - 1}) of the "
               "examples per class and of the learning layer's initial connections, for all ten digits; 'seen' are the digits the backbone "
               "was trained on, 'unseen' the others (chance 10 %). Learning layer: "
               f"{args.neurons_per_class} neurons per class, 1-bit weights, num_weights the "
               "mean number of active binary features, learning_competition 0.1. NCM: "
               "nearest class mean of the same examples, on the float PyTorch features or the "
               "1-bit Akida features. Learning time: Akida's CPU software backend (backbone "
               "and learning), per example learned. In hardware and program size: the whole "
               f"model, learning layer included, mapped on a virtual AKD1000. Run took "
               f"{time.perf_counter() - start:.0f} s."),
        formats={**percent, "in hardware": "percent", "program (bytes)": "int",
                 "learning (ms per example)": ".2f", "examples per class": "int",
                 "weights per neuron": "int"},
        command=" ".join(["python benchmarks/edge_learning.py", *(
            argv if argv is not None else sys.argv[1:])]),
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
