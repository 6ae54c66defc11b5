"""Conversion back-ends: the routes from a PyTorch model to an Akida model.

:mod:`.keras_cnn2snn` is the Akida 1.0 (4-bit) route through tf-keras,
QuantizeML's Keras quantizer and CNN2SNN.
"""
