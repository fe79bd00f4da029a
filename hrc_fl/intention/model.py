"""The multimodal intention model: per-modality encoders (SHARED) and a fusion head (PERSONAL).

The split is visible in the ``state_dict`` keys: everything under ``encoders.`` is shared and moves
through federated learning; everything under ``head.`` stays on the workstation (FedPer/FedRep style,
Arivazhagan et al. 2019, Collins et al. 2021). So does ``projector.``: the expander that self-supervised
training on the worker's unlabelled IMU windows acts through (:mod:`hrc_fl.federated.core.self_supervised`);
inference never uses it.

Inputs (all float32, batch first):
- ``imu``: (B, T, 6) wrist IMU window, [ax, ay, az] in m/s², [wx, wy, wz] in rad/s, sensor frame
  ``wrist_imu``, oldest sample first, T = ``imu_window`` samples at ``imu_rate_hz``.
- ``hands``: (B, hands_dim) hand landmark features (see :mod:`hrc_fl.intention.features`).
- ``pose``: (B, pose_dim) body pose features (see :mod:`hrc_fl.intention.features`).
A missing modality is ``None`` (absent for the whole batch) or flagged per sample in ``present``.
Missing modalities contribute a zero embedding and a 0 in the presence mask the head sees, so a
model trained with modality dropout degrades instead of breaking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

MODALITIES: tuple[str, ...] = ("imu", "hands", "pose")
SHARED_PREFIXES: tuple[str, ...] = ("encoders.",)
PERSONAL_PREFIXES: tuple[str, ...] = ("head.", "projector.")


@dataclass(frozen=True)
class IntentionModelConfig:
    """Structure of an :class:`IntentionModel` (stored with every saved model)."""

    num_classes: int
    imu_channels: int = 6
    imu_window: int = 100            # samples per IMU window
    imu_rate_hz: float = 50.0        # sample rate the windows were cut at
    hands_dim: int = 42              # 21 landmarks x (x, y), see features.hand_features
    pose_dim: int = 26               # 13 upper-body points x (x, y), see features.pose_features
    embed_dim: int = 32              # per-modality embedding size
    imu_conv_channels: int = 16
    head_hidden: int = 32
    modality_dropout_p: float = 0.3  # per sample and modality, training only
    projector_dim: int = 64          # self-supervised expander width on the IMU embedding (0 = none)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        for name in ("imu_channels", "imu_window", "hands_dim", "pose_dim", "embed_dim",
                     "imu_conv_channels", "head_hidden"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.imu_window < 16:
            raise ValueError(f"imu_window must be >= 16 samples, got {self.imu_window}")
        if not self.imu_rate_hz > 0:
            raise ValueError(f"imu_rate_hz must be positive, got {self.imu_rate_hz}")
        if self.projector_dim < 0:
            raise ValueError(f"projector_dim must be >= 0, got {self.projector_dim}")
        if not 0.0 <= self.modality_dropout_p < 1.0:
            raise ValueError(f"modality_dropout_p must be in [0, 1), got {self.modality_dropout_p}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IntentionModelConfig:
        """Build from a mapping; unknown keys raise ValueError (an incompatible model file). A mapping
        without ``projector_dim`` is a model saved before the projector existed: it has none (0)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown IntentionModelConfig keys: {sorted(unknown)}")
        values = dict(data)
        values.setdefault("projector_dim", 0)
        return cls(**values)


class ImuEncoder(nn.Module):
    """1-D CNN over an IMU window -> embedding. Input normalisation is part of the encoder (buffers),
    so a shared encoder carries the scaling it was trained with."""

    def __init__(self, channels: int, conv_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(channels))
        self.register_buffer("input_std", torch.ones(channels))
        c = conv_channels
        self.conv = nn.Sequential(
            # 50 Hz -> 25 Hz first: the exercises and reaching motions live below 5 Hz, and it halves the cost
            nn.AvgPool1d(kernel_size=2, stride=2),
            nn.Conv1d(channels, c, kernel_size=5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(c, c, kernel_size=5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(c, c, kernel_size=5, stride=2, padding=2), nn.ReLU(),
        )
        # mean and max over time: the exercises are periodic, their phase in the window is arbitrary
        self.proj = nn.Linear(2 * c, embed_dim)

    def forward(self, imu: Tensor) -> Tensor:
        x = (imu - self.input_mean) / self.input_std
        x = self.conv(x.transpose(1, 2))
        pooled = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)
        return torch.relu(self.proj(pooled))


class VectorEncoder(nn.Module):
    """Small MLP for a landmark feature vector -> embedding."""

    def __init__(self, in_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, 64), nn.ReLU(), nn.Linear(64, embed_dim), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class FusionHead(nn.Module):
    """Late fusion: concatenated embeddings + presence mask -> logits (the personal part)."""

    def __init__(self, embed_dim: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        n = len(MODALITIES)
        self.net = nn.Sequential(nn.Linear(n * embed_dim + n, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, embeddings: Tensor, present: Tensor) -> Tensor:
        return self.net(torch.cat([embeddings, present], dim=1))


class IntentionModel(nn.Module):
    """Encoders (shared) + head (personal); see the module docstring for inputs and units."""

    def __init__(self, config: IntentionModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleDict({
            "imu": ImuEncoder(config.imu_channels, config.imu_conv_channels, config.embed_dim),
            "hands": VectorEncoder(config.hands_dim, config.embed_dim),
            "pose": VectorEncoder(config.pose_dim, config.embed_dim),
        })
        self.head = FusionHead(config.embed_dim, config.head_hidden, config.num_classes)
        self.projector: nn.Sequential | None = None
        self.reset_parameters()
        # built after the others are initialised: encoders and head get the same initial weights from a
        # seed with or without it (so methods with and without self-supervision start alike)
        p = config.projector_dim
        if p > 0:
            self.projector = nn.Sequential(nn.Linear(config.embed_dim, p), nn.ReLU(), nn.Linear(p, p))
            for module in self.projector.modules():
                if isinstance(module, nn.Linear):
                    nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
                    nn.init.zeros_(module.bias)

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv1d | nn.Linear):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def set_imu_normalisation(self, mean: Tensor, std: Tensor) -> None:
        """Per-channel input mean/std (units of the IMU input) used by the IMU encoder."""
        enc = self.encoders["imu"]
        if mean.shape != enc.input_mean.shape or std.shape != enc.input_std.shape:
            raise ValueError(f"normalisation must have shape {tuple(enc.input_mean.shape)}")
        if not bool(torch.all(std > 0)):
            raise ValueError("normalisation std must be positive")
        enc.input_mean.copy_(mean)
        enc.input_std.copy_(std)

    def forward(self, imu: Tensor | None = None, hands: Tensor | None = None, pose: Tensor | None = None,
                *, present: Tensor | None = None) -> Tensor:
        """Logits (B, num_classes). ``present`` (B, 3) bool/float optionally flags per sample which of
        (imu, hands, pose) is real; a ``None`` input is absent for the whole batch."""
        inputs = {"imu": imu, "hands": hands, "pose": pose}
        batch = next((x.shape[0] for x in inputs.values() if x is not None), None)
        if batch is None:
            raise ValueError("at least one modality must be given")
        self._check_shapes(inputs, batch)
        ref = next(x for x in inputs.values() if x is not None)
        mask = torch.ones(batch, len(MODALITIES), dtype=ref.dtype, device=ref.device)
        for i, name in enumerate(MODALITIES):
            if inputs[name] is None:
                mask[:, i] = 0.0
        if present is not None:
            if present.shape != (batch, len(MODALITIES)):
                raise ValueError(f"present must have shape ({batch}, {len(MODALITIES)})")
            mask = mask * present.to(mask.dtype)
        if self.training and self.config.modality_dropout_p > 0.0:
            mask = _drop_modalities(mask, self.config.modality_dropout_p)
        parts = []
        for i, name in enumerate(MODALITIES):
            x = inputs[name]
            if x is None:
                parts.append(torch.zeros(batch, self.config.embed_dim, dtype=ref.dtype, device=ref.device))
            else:
                parts.append(self.encoders[name](x) * mask[:, i:i + 1])
        return self.head(torch.cat(parts, dim=1), mask)

    def _check_shapes(self, inputs: Mapping[str, Tensor | None], batch: int) -> None:
        c = self.config
        expected = {"imu": (batch, c.imu_window, c.imu_channels), "hands": (batch, c.hands_dim),
                    "pose": (batch, c.pose_dim)}
        for name, x in inputs.items():
            if x is not None and tuple(x.shape) != expected[name]:
                raise ValueError(f"{name} input must have shape {expected[name]}, got {tuple(x.shape)}")


def _drop_modalities(mask: Tensor, p: float) -> Tensor:
    """Randomly zero present modalities per sample with probability ``p``, keeping at least one."""
    keep = (torch.rand_like(mask) >= p).to(mask.dtype)
    dropped = mask * keep
    empty = dropped.sum(dim=1) == 0
    if bool(empty.any()):
        dropped[empty] = mask[empty]  # never drop everything a sample had
    return dropped


def is_shared_key(key: str) -> bool:
    return key.startswith(SHARED_PREFIXES)


def shared_state_dict(model: IntentionModel) -> dict[str, Tensor]:
    """The shared (federated) tensors: every state_dict entry under ``encoders.`` (detached copies)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if is_shared_key(k)}


def personal_state_dict(model: IntentionModel) -> dict[str, Tensor]:
    """The personal tensors (the head and the self-supervised projector), detached copies."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not is_shared_key(k)}


def load_shared_state_dict(model: IntentionModel, state: Mapping[str, Tensor]) -> None:
    """Load exactly the shared tensors into ``model``; the head is untouched.

    Raises ValueError when keys are missing/unexpected or a shape differs (incompatible update).
    """
    own = {k: v for k, v in model.state_dict().items() if is_shared_key(k)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"shared state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(f"shared tensor {key} has shape {tuple(value.shape)}, "
                             f"model expects {tuple(own[key].shape)}")
    model.load_state_dict(dict(state), strict=False)


def parameter_counts(model: IntentionModel) -> dict[str, int]:
    """Number of trainable parameters in the shared and personal parts."""
    shared = sum(p.numel() for n, p in model.named_parameters() if is_shared_key(n))
    personal = sum(p.numel() for n, p in model.named_parameters() if not is_shared_key(n))
    return {"shared": shared, "personal": personal}


def state_bytes(state: Mapping[str, Tensor]) -> int:
    """Bytes of a set of tensors as stored (float32 = 4 bytes per value)."""
    return int(sum(t.numel() * t.element_size() for t in state.values()))
