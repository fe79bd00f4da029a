"""Self-supervised learning on a worker's own *unlabelled* IMU windows (plain torch, ROS- and FedML-free).

A workstation sees far more IMU windows than its worker ever labels (on a shop floor 10-20 % carry a task
event). VICReg (Bardes, Ponce, LeCun 2022, ICLR) turns the rest into a training signal without labels and
without negatives: two random views of the same window should embed alike (invariance), every embedding
dimension should keep a spread across a batch (variance) and dimensions should not copy each other
(covariance). No negatives matters here: in a federation each client only has its own worker's windows,
and contrastive methods (SimCLR) that need negatives from other subjects lost 1.5 points against pooled
training when federated (docs/federated_core.md).

The loss acts on the model's IMU embedding through the model's ``projector`` (VICReg's "expander"),
which is trained with the shared encoders and stays on the workstation like the personal head. It is an
extra term in local training only: nothing about it is ever sent, and unlabelled windows never count in
the FedAvg weight.

Views of a (B, T, 6) window batch (SI units, sensor frame): per-window, per-channel scaling by
N(1, ``scale_std``), Gaussian jitter of ``jitter_std`` x the batch's per-channel standard deviation, and a
circular time shift of up to ``max_shift`` samples (one shift per view batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

Features = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class VicRegConfig:
    """The VICReg term of local training and its views.

    ``weight`` multiplies the standard VICReg loss (coefficients ``invariance``, ``variance``,
    ``covariance`` = 25, 25, 1 as in the paper) added to the cross-entropy of every optimiser step that
    trains the shared encoders. ``unlabelled_ratio``: windows in the VICReg batch per labelled window in
    the step. ``min_windows``: a worker with fewer stored windows trains on labels only (the variance and
    covariance terms need a batch). ``feature_key``: the input it acts on (the model's
    ``encoders[feature_key]``). Defaults measured on the watch data (docs/federated_core.md).
    """

    weight: float = 0.02
    unlabelled_ratio: int = 4
    invariance: float = 25.0
    variance: float = 25.0
    covariance: float = 1.0
    scale_std: float = 0.1
    jitter_std: float = 0.05
    max_shift: int = 10
    min_windows: int = 16
    feature_key: str = "imu"

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        if self.unlabelled_ratio < 1:
            raise ValueError(f"unlabelled_ratio must be >= 1, got {self.unlabelled_ratio}")
        if min(self.invariance, self.variance, self.covariance) < 0:
            raise ValueError("invariance, variance and covariance coefficients must be >= 0")
        if not (self.scale_std >= 0 and self.jitter_std >= 0 and self.max_shift >= 0):
            raise ValueError("scale_std, jitter_std and max_shift must be >= 0")
        if self.min_windows < 2:
            raise ValueError(f"min_windows must be >= 2, got {self.min_windows}")
        if not self.feature_key:
            raise ValueError("feature_key must be non-empty")

    @classmethod
    def from_mapping(cls, data: Mapping[str, object] | None) -> VicRegConfig | None:
        """From a config mapping (e.g. config/federated.yaml's ``client.self_supervised``); None or
        ``{"enabled": false}`` = off. Unknown keys raise ValueError."""
        if data is None:
            return None
        values = dict(data)
        if not values.pop("enabled", True):
            return None
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown self_supervised keys: {sorted(unknown)}")
        return cls(**values)  # type: ignore[arg-type]


def channel_std_of(x: torch.Tensor) -> torch.Tensor:
    """(1, 1, C) per-channel standard deviation of a (B, T, C) batch (ones for a single sample)."""
    b, t, c = x.shape
    return x.std(dim=(0, 1), keepdim=True) if b * t > 1 else torch.ones(1, 1, c, dtype=x.dtype)


def imu_view(x: torch.Tensor, cfg: VicRegConfig, generator: torch.Generator | None = None,
             std: torch.Tensor | None = None) -> torch.Tensor:
    """One random view of a (B, T, C) window batch (see the module docstring); same shape and units.
    ``std``: the batch's :func:`channel_std_of` when the caller already has it (two views of one batch)."""
    if x.dim() != 3:
        raise ValueError(f"windows must be (B, T, C), got shape {tuple(x.shape)}")
    b, _, c = x.shape
    scale = 1.0 + cfg.scale_std * torch.randn(b, 1, c, generator=generator, dtype=x.dtype)
    channel_std = channel_std_of(x) if std is None else std
    view = x * scale + cfg.jitter_std * channel_std * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    if cfg.max_shift:
        shift = int(torch.randint(-cfg.max_shift, cfg.max_shift + 1, (1,), generator=generator))
        view = torch.roll(view, shifts=shift, dims=1)
    return view


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(invariance, variance, covariance) of two (B, D) embedding batches of the same windows:
    mean squared difference; mean hinge of 1 - per-dimension std (summed over both batches); squared
    off-diagonal covariance per dimension (summed over both batches)."""
    if z1.shape != z2.shape or z1.dim() != 2 or z1.shape[0] < 2:
        raise ValueError(f"need two (B >= 2, D) batches of the same shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)

    def variance(z: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - torch.sqrt(z.var(dim=0) + 1e-4)).mean()

    def covariance(z: torch.Tensor) -> torch.Tensor:
        z = z - z.mean(dim=0)
        cov = (z.t() @ z) / (n - 1)
        off = cov - torch.diag(torch.diag(cov))
        return (off ** 2).sum() / d

    return invariance, variance(z1) + variance(z2), covariance(z1) + covariance(z2)


def projected_embedding(model: nn.Module, x: torch.Tensor, feature_key: str = "imu") -> torch.Tensor:
    """``model.projector(model.encoders[feature_key](x))``; ValueError if the model has neither."""
    encoders = getattr(model, "encoders", None)
    projector = getattr(model, "projector", None)
    if encoders is None or feature_key not in encoders or projector is None:
        raise ValueError(f"self-supervised training needs a model with encoders[{feature_key!r}] and a "
                         "projector (IntentionModelConfig.projector_dim > 0)")
    return projector(encoders[feature_key](x))


def vicreg_loss(model: nn.Module, features: Features, cfg: VicRegConfig,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The weighted VICReg loss (before ``cfg.weight``) of one batch of windows (a Tensor or a dict
    holding ``cfg.feature_key``); 0 with a graph when the batch has fewer than 2 windows."""
    x = features[cfg.feature_key] if isinstance(features, Mapping) else features
    if x is None:
        raise ValueError(f"unlabelled features lack {cfg.feature_key!r}")
    if x.shape[0] < 2:
        return torch.zeros((), requires_grad=True)
    n = x.shape[0]
    std = channel_std_of(x)  # once for both views (the reduction costs as much as drawing a view's jitter)
    z = projected_embedding(model, torch.cat([imu_view(x, cfg, generator, std), imu_view(x, cfg, generator, std)]),
                            cfg.feature_key)
    invariance, variance, covariance = vicreg_terms(z[:n], z[n:])
    return cfg.invariance * invariance + cfg.variance * variance + cfg.covariance * covariance
