"""Torch-free inference of the landmark MLP (:class:`hrc_fl.perception.landmark_mlp.LandmarkMLP`).

The hands and pose nodes only run two tiny classifiers; importing torch for them costs about 0.5 GB RSS
and seconds of start-up per node. This module reads the same safetensors + JSON meta files that
``landmark_mlp.save_model`` writes and runs the network in numpy float32. Training stays in torch.

Network (eval mode, so Dropout is the identity):
``Linear(in, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, classes) -> softmax``; the state-dict keys
are ``net.0``, ``net.3``, ``net.6`` (indices 1, 2, 4, 5 are ReLU/Dropout without parameters).
A file with other keys or shapes (i.e. the torch architecture changed) is rejected with ValueError.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hrc_fl.data.assets import asset_path

#: ``nn.Sequential`` indices of the Linear layers in ``LandmarkMLP.net``, in order; ReLU after all but the last.
LINEAR_LAYERS: tuple[str, ...] = ("net.0", "net.3", "net.6")


def read_meta(weights_path: Path | str) -> dict:
    """The JSON meta saved beside ``weights_path`` (same name, ``.json``)."""
    return json.loads(Path(weights_path).with_suffix(".json").read_text())


class NumpyLandmarkMLP:
    """Landmark MLP forward pass in numpy float32. Build with :meth:`load`."""

    def __init__(self, state: dict[str, np.ndarray], in_dim: int, num_classes: int, hidden: int) -> None:
        expected = {
            "net.0.weight": (hidden, in_dim), "net.0.bias": (hidden,),
            "net.3.weight": (hidden, hidden), "net.3.bias": (hidden,),
            "net.6.weight": (num_classes, hidden), "net.6.bias": (num_classes,),
        }
        if set(state) != set(expected):
            raise ValueError(f"unexpected MLP tensors {sorted(state)}, expected {sorted(expected)}")
        for key, shape in expected.items():
            if tuple(state[key].shape) != shape:
                raise ValueError(f"MLP tensor {key} has shape {tuple(state[key].shape)}, expected {shape}")
        self.in_dim, self.num_classes, self.hidden = in_dim, num_classes, hidden
        # weights stored (out, in) like torch; keep them transposed and contiguous for x @ W
        self._layers = [(np.ascontiguousarray(state[f"{name}.weight"].T, dtype=np.float32),
                         np.asarray(state[f"{name}.bias"], dtype=np.float32)) for name in LINEAR_LAYERS]

    @classmethod
    def load(cls, weights_path: Path | str) -> tuple[NumpyLandmarkMLP, dict]:
        """Model and meta saved by ``landmark_mlp.save_model``; ValueError on a mismatched file."""
        from safetensors.numpy import load_file

        meta = read_meta(weights_path)
        try:
            shape = int(meta["in_dim"]), int(meta["num_classes"]), int(meta["hidden"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{weights_path}: meta lacks the MLP shape ({exc})") from exc
        try:
            model = cls(load_file(str(weights_path)), *shape)
        except ValueError as exc:
            raise ValueError(f"{weights_path} does not match its meta: {exc}") from exc
        return model, meta

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Softmax probabilities (N, num_classes) float32 for features (N, in_dim)."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"features must be (N, {self.in_dim}), got {x.shape}")
        # einsum, not ``@``: numpy's OpenBLAS runs the 128x128 layer on 2 threads, and its idle worker
        # then busy-waits; called per frame that burnt about half a core in each node (measured).
        *hidden, (w_out, b_out) = self._layers
        for w, b in hidden:
            x = np.maximum(np.einsum("nk,kh->nh", x, w) + b, np.float32(0.0))
        logits = np.einsum("nk,kh->nh", x, w_out) + b_out
        logits -= logits.max(axis=1, keepdims=True)  # stable softmax
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)


def load_classifier_weights(path: Path | str | None, default_asset: str) -> tuple[NumpyLandmarkMLP, dict]:
    """Weights + JSON meta of a landmark classifier for inference (numpy: the nodes must not import
    torch); ``path`` None = the asset ``default_asset`` built by ``hrc-fl setup-assets``."""
    if path is None:
        path = asset_path(default_asset)
    return NumpyLandmarkMLP.load(Path(path))


def thresholded_class(probs: np.ndarray, min_confidence: float | np.ndarray) -> tuple[int, float]:
    """(class index, its probability) of a classifier output, class 0 (NONE) when the best class is
    below ``min_confidence`` (one value, or one per class); non-finite probabilities count as 0."""
    probs = np.where(np.isfinite(probs), probs, 0.0)
    code = int(np.argmax(probs))
    if probs[code] < np.broadcast_to(min_confidence, probs.shape)[code]:
        code = 0  # not sure enough: NONE, reported with the probability the classifier gave NONE
    return code, float(probs[code])
