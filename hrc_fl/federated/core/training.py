"""Local training and evaluation on one client (plain torch).

A loader yields ``(features, labels)`` batches: ``features`` is either a Tensor (passed positionally) or
a dict of keyword tensors for the model's ``forward`` (e.g. ``{"imu": (B, T, 6)}`` for IntentionModel);
``labels`` is a LongTensor (B,) of class indices. An *unlabelled* loader yields only ``features`` (same
forms); with a :class:`PseudoLabelConfig` :func:`train_local` adds a FixMatch-style loss on them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hrc_fl.federated.core.self_supervised import VicRegConfig, channel_std_of, vicreg_loss
from hrc_fl.federated.core.split import is_shared
from hrc_fl.training_loop import TrainResult, run_epochs

Features = torch.Tensor | Mapping[str, torch.Tensor]
Batch = tuple[Features, torch.Tensor]
#: State-dict prefix of the self-supervised projector (personal; see hrc_fl.intention.model).
PROJECTOR_PREFIX = "projector."


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Semi-supervised local training on a client's own unlabelled windows (FixMatch, Sohn et al. 2020,
    with IMU augmentations instead of image ones).

    Every optimiser step draws one unlabelled batch besides the labelled one. The model in eval mode labels
    the clean (weak) view; windows whose top softmax probability is >= ``threshold`` get that class as a
    pseudo-label, and the loss gains ``weight`` x the cross-entropy of the model (train mode) on a strong
    view of them: a random 3-D rotation of every channel triple in ``vector_channels`` (accelerometer and
    gyroscope rotated together, as a watch worn at another angle; angle uniform in +-``rotation_deg``
    about a random axis), then per-window, per-channel scaling by N(1, ``scale_std``) and Gaussian jitter
    of ``jitter_std`` x the batch's per-channel standard deviation. Windows below the threshold contribute
    nothing (the FixMatch mask; the mean is over the whole unlabelled batch).
    ``warmup_rounds``: the first rounds train on labels only (the model must be better than chance before
    its own predictions are trusted). ``unlabelled_ratio``: unlabelled windows per labelled window in a
    step (FixMatch's mu; the caller sizes the unlabelled batches with it). ``feature_key``: the input
    the augmentations act on when features are a dict (other entries are passed through unchanged).
    ``in_head_training``: also use pseudo-labels in FedRep's personal-head phase (False: only the shared
    encoders learn from them, so a client's systematic pseudo-label errors are averaged with the other
    clients' updates instead of going straight into its personal head). ``in_head_refresh``: also use
    them when the head is refreshed on a new global encoder.
    """

    threshold: float = 0.95
    weight: float = 1.0
    warmup_rounds: int = 3
    unlabelled_ratio: int = 2
    jitter_std: float = 0.05
    scale_std: float = 0.1
    rotation_deg: float = 0.0
    vector_channels: tuple[tuple[int, int, int], ...] = ((0, 1, 2), (3, 4, 5))
    feature_key: str = "imu"
    in_head_training: bool = False
    in_head_refresh: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if not self.weight >= 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        if self.warmup_rounds < 0:
            raise ValueError(f"warmup_rounds must be >= 0, got {self.warmup_rounds}")
        if self.unlabelled_ratio < 1:
            raise ValueError(f"unlabelled_ratio must be >= 1, got {self.unlabelled_ratio}")
        if not (self.jitter_std >= 0 and self.scale_std >= 0 and 0 <= self.rotation_deg <= 180):
            raise ValueError("jitter_std and scale_std must be >= 0, rotation_deg in [0, 180]")
        if any(len(triple) != 3 or min(triple) < 0 for triple in self.vector_channels):
            raise ValueError(f"vector_channels must be triples of channel indices, got {self.vector_channels}")
        if not self.feature_key:
            raise ValueError("feature_key must be non-empty")

    def active(self, server_round: int) -> bool:
        """Whether pseudo-labels are used in ``server_round`` (1-based): after the warm-up rounds."""
        return server_round > self.warmup_rounds


@dataclass(frozen=True)
class EvalResult:
    """Accuracy and macro-F1 (both in [0, 1]) over ``num_samples`` samples."""

    accuracy: float
    macro_f1: float
    num_samples: int


def forward(model: nn.Module, features: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Logits for a batch whose features are a Tensor or a dict of keyword tensors."""
    if isinstance(features, Mapping):
        return model(**features)
    return model(features)


def _augment(x: torch.Tensor, cfg: PseudoLabelConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Strong view of a (B, T, C) window batch: per-window per-channel scaling and relative jitter."""
    if x.dim() != 3:
        raise ValueError(f"augmented input must be (B, T, C), got shape {tuple(x.shape)}")
    b, _, c = x.shape
    if cfg.rotation_deg > 0 and cfg.vector_channels:
        x = x.clone()
        rotation = _random_rotations(b, cfg.rotation_deg, generator, x.dtype)
        for triple in cfg.vector_channels:
            if max(triple) >= c:
                raise ValueError(f"vector channels {triple} outside the {c} input channels")
            cols = list(triple)
            x[:, :, cols] = torch.einsum("btj,bij->bti", x[:, :, cols], rotation)
    scale = 1.0 + cfg.scale_std * torch.randn(b, 1, c, generator=generator, dtype=x.dtype)
    noise = cfg.jitter_std * channel_std_of(x) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x * scale + noise


def _random_rotations(count: int, max_deg: float, generator: torch.Generator | None,
                      dtype: torch.dtype) -> torch.Tensor:
    """(count, 3, 3) rotation matrices about uniformly random axes by angles uniform in +-``max_deg``."""
    axis = torch.randn(count, 3, generator=generator, dtype=dtype)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    angle = (2 * torch.rand(count, generator=generator, dtype=dtype) - 1) * np.deg2rad(max_deg)
    k = torch.zeros(count, 3, 3, dtype=dtype)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    sin, cos = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return torch.eye(3, dtype=dtype) + sin * k + (1 - cos) * (k @ k)  # Rodrigues


def strong_view(features: Features, cfg: PseudoLabelConfig,
                generator: torch.Generator | None = None) -> Features:
    """:func:`_augment` applied to a Tensor or to ``features[cfg.feature_key]`` (other keys unchanged)."""
    if isinstance(features, Mapping):
        if cfg.feature_key not in features or features[cfg.feature_key] is None:
            raise ValueError(f"unlabelled features lack {cfg.feature_key!r}")
        out = dict(features)
        out[cfg.feature_key] = _augment(features[cfg.feature_key], cfg, generator)
        return out
    return _augment(features, cfg, generator)


def pseudo_labels(model: nn.Module, features: Features, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes, mask): the model's (eval mode, no gradients) argmax on ``features`` and whether its
    softmax probability is >= ``threshold``. Restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(forward(model, features), dim=1)
    model.train(was_training)
    confidence, classes = probs.max(dim=1)
    return classes, confidence >= threshold


def pseudo_label_loss(model: nn.Module, features: Features, cfg: PseudoLabelConfig,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """FixMatch's unlabelled term for one batch: mean over the batch of mask x CE(model(strong view),
    pseudo-label), and the number of windows that passed the threshold. 0 (with a graph) when none did."""
    classes, mask = pseudo_labels(model, features, cfg.threshold)
    passed = int(mask.sum())
    if passed == 0:
        return torch.zeros((), requires_grad=True), 0
    logits = forward(model, strong_view(features, cfg, generator))
    per_window = F.cross_entropy(logits, classes, reduction="none")
    return (per_window * mask.to(per_window.dtype)).mean(), passed


def _cycle(loader: Iterable[Features]) -> Iterator[Features]:
    """Endless passes over an unlabelled loader (re-iterated, so a shuffling loader reshuffles)."""
    while True:
        empty = True
        for features in loader:
            empty = False
            yield features
        if empty:
            raise ValueError("the unlabelled loader yields no batches")


def _batch_size(features: Features) -> int:
    if isinstance(features, Mapping):
        return int(next(v.shape[0] for v in features.values() if v is not None))
    return int(features.shape[0])


def train_local(model: nn.Module, loader: Iterable[Batch], *, epochs: int, lr: float,
                proximal_mu: float = 0.0, shared_reference: Mapping[str, np.ndarray] | None = None,
                shared_prefixes: Sequence[str] = ("",), trainable_prefixes: Sequence[str] | None = None,
                weight_decay: float = 0.0, unlabelled: Iterable[Features] | None = None,
                pseudo: PseudoLabelConfig | None = None, generator: torch.Generator | None = None,
                ssl_windows: Iterable[Features] | None = None, ssl: VicRegConfig | None = None
                ) -> TrainResult:
    """Train ``model`` in place with Adam and cross-entropy.

    FedProx (Li et al. 2020, MLSys): with ``proximal_mu`` > 0 the loss gains
    (mu/2) * sum ||w - w_ref||^2 over the shared parameters, ``shared_reference`` holding w_ref (the
    round's global shared tensors by state-dict name). ``trainable_prefixes`` limits which parameters
    are updated (e.g. only the personal head for fine-tuning, FedRep's alternating steps); None = all.
    Semi-supervised: with ``unlabelled`` (a loader of features only) and ``pseudo`` both given, every step
    adds ``pseudo.weight`` x :func:`pseudo_label_loss` on the next unlabelled batch (``generator`` draws the
    augmentations). The caller decides the warm-up (:meth:`PseudoLabelConfig.active`).
    Self-supervised: with ``ssl_windows`` (a loader of features, labelled or not) and ``ssl`` both given,
    every step adds ``ssl.weight`` x :func:`~hrc_fl.federated.core.self_supervised.vicreg_loss` on the next
    batch of them (only useful when the step trains the encoder and the model's projector).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not proximal_mu >= 0:
        raise ValueError(f"proximal_mu must be >= 0, got {proximal_mu}")
    if proximal_mu > 0 and shared_reference is None:
        raise ValueError("proximal_mu > 0 needs shared_reference (the global shared tensors)")
    if (unlabelled is None) != (pseudo is None):
        raise ValueError("unlabelled and pseudo go together (both or neither)")
    if (ssl_windows is None) != (ssl is None):
        raise ValueError("ssl_windows and ssl go together (both or neither)")
    unlabelled_batches = _cycle(unlabelled) if unlabelled is not None else None
    ssl_batches = _cycle(ssl_windows) if ssl_windows is not None and ssl is not None and ssl.weight > 0 else None
    named = [(n, p) for n, p in model.named_parameters()
             if trainable_prefixes is None or is_shared(n, trainable_prefixes)]
    if not named:
        raise ValueError(f"no parameters match trainable_prefixes {trainable_prefixes}")
    trainable = {n for n, _ in named}
    previous_flags = {name: param.requires_grad for name, param in model.named_parameters()}
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
    # foreach: one multi-tensor kernel per Adam op instead of a Python loop over the parameters (torch picks it
    # by default on CUDA only); the same arithmetic bit for bit (tested), 0.50 -> 0.41 ms a step on CPU here
    optimizer = torch.optim.Adam([p for _, p in named], lr=lr, weight_decay=weight_decay, foreach=True)
    anchors: list[tuple[torch.Tensor, torch.Tensor]] = []
    if proximal_mu > 0:
        assert shared_reference is not None
        for name, param in named:
            if is_shared(name, shared_prefixes) and name in shared_reference:
                anchors.append((param, torch.as_tensor(np.asarray(shared_reference[name]), dtype=param.dtype)))
    seen, passed = 0, 0

    def batch_loss(batch: Batch) -> tuple[torch.Tensor, int]:
        nonlocal seen, passed
        features, labels = batch
        loss = F.cross_entropy(forward(model, features), labels)
        if unlabelled_batches is not None and pseudo is not None and pseudo.weight > 0:
            unlabelled_batch = next(unlabelled_batches)
            extra, count = pseudo_label_loss(model, unlabelled_batch, pseudo, generator)
            loss = loss + pseudo.weight * extra
            seen += _batch_size(unlabelled_batch)
            passed += count
        if ssl_batches is not None and ssl is not None:
            loss = loss + ssl.weight * vicreg_loss(model, next(ssl_batches), ssl, generator)
        if anchors:
            prox = sum(((p - ref) ** 2).sum() for p, ref in anchors)
            loss = loss + 0.5 * proximal_mu * prox
        return loss, int(labels.shape[0])

    result = run_epochs(model, optimizer, epochs=epochs, batches=lambda: loader, batch_loss=batch_loss)
    for name, param in model.named_parameters():
        param.requires_grad_(previous_flags[name])
    return dataclasses.replace(result, unlabelled_seen=seen, pseudo_labelled=passed)


def predict(model: nn.Module, loader: Iterable[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) over a loader, in eval mode without gradients."""
    model.eval()
    truth: list[np.ndarray] = []
    guess: list[np.ndarray] = []
    with torch.no_grad():
        for features, labels in loader:
            truth.append(labels.cpu().numpy())
            guess.append(forward(model, features).argmax(dim=1).cpu().numpy())
    if not truth:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(truth), np.concatenate(guess)


def macro_f1(truth: np.ndarray, guess: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``truth`` or ``guess``."""
    classes = np.union1d(truth, guess)
    if classes.size == 0:
        return 0.0
    scores = []
    for c in classes:
        tp = float(np.sum((guess == c) & (truth == c)))
        fp = float(np.sum((guess == c) & (truth != c)))
        fn = float(np.sum((guess != c) & (truth == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0)
    return float(np.mean(scores))


def evaluate(model: nn.Module, loader: Iterable[Batch]) -> EvalResult:
    """Accuracy and macro-F1 of ``model`` on a loader."""
    truth, guess = predict(model, loader)
    if truth.size == 0:
        return EvalResult(0.0, 0.0, 0)
    return EvalResult(float(np.mean(truth == guess)), macro_f1(truth, guess), int(truth.size))


def personal_names(model: nn.Module, shared_prefixes: Sequence[str]) -> tuple[str, ...]:
    """Names of the parameters outside ``shared_prefixes`` (the personal head)."""
    return tuple(n for n, _ in model.named_parameters() if not is_shared(n, shared_prefixes))


def train_fedrep(model: nn.Module, loader: Iterable[Batch], *, head_epochs: int, epochs: int, lr: float,
                 shared_prefixes: Sequence[str], proximal_mu: float = 0.0,
                 shared_reference: Mapping[str, np.ndarray] | None = None,
                 weight_decay: float = 0.0, unlabelled: Iterable[Features] | None = None,
                 pseudo: PseudoLabelConfig | None = None, generator: torch.Generator | None = None,
                 ssl_windows: Iterable[Features] | None = None, ssl: VicRegConfig | None = None
                 ) -> TrainResult:
    """One client round of FedRep (Collins et al. 2021): the personal head for ``head_epochs`` with the
    shared encoders frozen, then the shared encoders for ``epochs`` with the head frozen (FedProx term
    ``proximal_mu`` towards ``shared_reference`` on the encoders). With ``unlabelled`` and ``pseudo`` the
    encoder phase adds the pseudo-label loss (:func:`train_local`), the head phase only with
    ``pseudo.in_head_training``. With ``ssl_windows`` and ``ssl`` the encoder phase adds the VICReg term and
    also trains the model's (personal) ``projector``. Returns the encoder phase's result (its
    ``num_samples``, labelled windows only, is the FedAvg weight)."""
    if head_epochs < 0:
        raise ValueError(f"head_epochs must be >= 0, got {head_epochs}")
    if head_epochs:
        personal = personal_names(model, shared_prefixes)
        if not personal:
            raise ValueError("model has no personal parameters outside the shared prefixes")
        in_head = pseudo is not None and pseudo.in_head_training
        train_local(model, loader, epochs=head_epochs, lr=lr, trainable_prefixes=personal,
                    weight_decay=weight_decay, unlabelled=unlabelled if in_head else None,
                    pseudo=pseudo if in_head else None, generator=generator)
    encoder_phase = (*shared_prefixes, PROJECTOR_PREFIX) if ssl is not None else tuple(shared_prefixes)
    return train_local(model, loader, epochs=epochs, lr=lr, proximal_mu=proximal_mu,
                       shared_reference=shared_reference, shared_prefixes=shared_prefixes,
                       trainable_prefixes=encoder_phase, weight_decay=weight_decay,
                       unlabelled=unlabelled, pseudo=pseudo, generator=generator, ssl_windows=ssl_windows, ssl=ssl)


def fine_tune_personal(model: nn.Module, loader: Iterable[Batch], *, epochs: int, lr: float,
                       shared_prefixes: Sequence[str], unlabelled: Iterable[Features] | None = None,
                       pseudo: PseudoLabelConfig | None = None,
                       generator: torch.Generator | None = None) -> TrainResult:
    """Train only the parameters outside ``shared_prefixes`` (the personal head), encoders frozen
    (optionally with the pseudo-label loss, see :func:`train_local`)."""
    personal = personal_names(model, shared_prefixes)
    if not personal:
        raise ValueError("model has no personal parameters outside the shared prefixes")
    return train_local(model, loader, epochs=epochs, lr=lr, trainable_prefixes=personal, unlabelled=unlabelled,
                       pseudo=pseudo, generator=generator)
