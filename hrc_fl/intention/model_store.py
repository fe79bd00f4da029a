"""A local, versioned store of intention models: ``<root>/<version>.safetensors`` + ``<version>.json``.

The JSON meta holds the format version, the model config, the label space, the SHA-256 of the weights
file, creation time and free-form ``info``. Both files are written atomically (temp file in the same
folder, fsync, ``os.replace``), weights first and meta last: a version exists once its meta exists, so
a reader never sees half a model. Loading checks everything (checksum, config, labels, tensor names,
shapes, finiteness) and raises :class:`ModelStoreError` with a clear message; callers keep their
previous model on error.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrc_fl.data.atomic_io import atomic_write_bytes

if TYPE_CHECKING:
    from hrc_fl.intention.model import IntentionModel, IntentionModelConfig

# torch (and the model module, which needs it) is imported where weights are read or written, so that
# listing and seeding stores (the demo's driver process) does not pay torch's few hundred MB.

FORMAT = "hrc_fl.intention/1"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ModelStoreError(ValueError):
    """A model version is missing, corrupt or incompatible with what the caller needs."""


@dataclass(frozen=True)
class ModelMeta:
    version: str
    config: IntentionModelConfig
    labels: tuple[str, ...]
    sha256: str
    created_unix_s: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    model: IntentionModel
    meta: ModelMeta


def check_version_name(version: str) -> str:
    """Version names are file-name safe tokens (letters, digits, ``._-``), max 64 characters."""
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ModelStoreError(f"invalid model version name {version!r} (letters, digits, ._- only)")
    return version


class ModelStore:
    """Versioned intention models in one folder (created on first save)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _paths(self, version: str) -> tuple[Path, Path]:
        check_version_name(version)
        return self.root / f"{version}.safetensors", self.root / f"{version}.json"

    def versions(self) -> list[str]:
        """Committed versions (those with a meta file), oldest first by creation time."""
        if not self.root.is_dir():
            return []
        found: list[tuple[float, str]] = []
        for meta_path in self.root.glob("*.json"):
            version = meta_path.stem
            if not _VERSION_RE.match(version):
                continue
            try:
                created = float(json.loads(meta_path.read_text("utf-8")).get("created_unix_s", 0.0))
            except (OSError, ValueError, AttributeError):
                created = 0.0  # unreadable meta: still listed, load() will say what is wrong
            found.append((created, version))
        return [v for _, v in sorted(found)]

    def latest(self) -> str | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def next_version(self, prefix: str = "v") -> str:
        """``<prefix>NNNN`` one above the highest such version in the store."""
        numbers = [int(m.group(1)) for v in self.versions()
                   if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", v))]
        return check_version_name(f"{prefix}{max(numbers, default=0) + 1:04d}")

    def save(self, model: IntentionModel, labels: Sequence[str], version: str | None = None,
             info: Mapping[str, Any] | None = None) -> str:
        """Write ``model`` as ``version`` (default: :meth:`next_version`); returns the version.

        Raises ModelStoreError when the labels do not match the model's class count or the version
        already exists (versions are immutable: a reader may have it loaded).
        """
        labels = tuple(str(label) for label in labels)
        if len(labels) != model.config.num_classes or len(set(labels)) != len(labels):
            raise ModelStoreError(f"{len(labels)} distinct labels needed for {model.config.num_classes} classes, "
                                  f"got {labels}")
        version = check_version_name(version or self.next_version())
        weights_path, meta_path = self._paths(version)
        if meta_path.exists():
            raise ModelStoreError(f"model version {version} already exists in {self.root}")
        import torch
        from safetensors.torch import save as save_safetensors_bytes

        self.root.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
        blob = save_safetensors_bytes(state, metadata={"format": FORMAT, "version": version})
        meta = {"format": FORMAT, "version": version, "config": model.config.to_dict(),
                "labels": list(labels), "sha256": hashlib.sha256(blob).hexdigest(),
                "created_unix_s": time.time(), "info": dict(info or {})}
        atomic_write_bytes(weights_path, blob)
        atomic_write_bytes(meta_path, json.dumps(meta, indent=1, sort_keys=True).encode("utf-8"))
        return version

    def read_meta(self, version: str) -> ModelMeta:
        """Parse and check the meta of ``version`` (no weights read)."""
        from hrc_fl.intention.model import IntentionModelConfig

        _, meta_path = self._paths(version)
        try:
            raw = json.loads(meta_path.read_text("utf-8"))
        except FileNotFoundError:
            raise ModelStoreError(f"model version {version} not found in {self.root}") from None
        except (OSError, ValueError) as exc:
            raise ModelStoreError(f"model version {version}: meta file unreadable ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ModelStoreError(f"model version {version}: not a {FORMAT} meta file")
        try:
            config = IntentionModelConfig.from_dict(raw["config"])
            labels = tuple(str(label) for label in raw["labels"])
            sha = str(raw["sha256"])
            created = float(raw.get("created_unix_s", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelStoreError(f"model version {version}: incompatible meta ({exc})") from None
        if len(labels) != config.num_classes:
            raise ModelStoreError(f"model version {version}: {len(labels)} labels for {config.num_classes} classes")
        return ModelMeta(version=version, config=config, labels=labels, sha256=sha, created_unix_s=created,
                         info=dict(raw.get("info") or {}))

    def load(self, version: str, *, labels: Sequence[str] | None = None,
             config: IntentionModelConfig | None = None) -> LoadedModel:
        """Load and validate ``version``. ``labels`` / ``config``: what the caller requires (the
        deployment's label space, the input sizes it feeds); a mismatch raises ModelStoreError."""
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors_bytes

        from hrc_fl.intention.model import IntentionModel

        meta = self.read_meta(version)
        if labels is not None and tuple(labels) != meta.labels:
            raise ModelStoreError(f"model version {version}: label space {list(meta.labels)} differs from the "
                                  f"configured {list(labels)}")
        if config is not None:
            for key in ("imu_window", "imu_channels", "hands_dim", "pose_dim", "imu_rate_hz"):
                if getattr(config, key) != getattr(meta.config, key):
                    raise ModelStoreError(f"model version {version}: {key}={getattr(meta.config, key)} but "
                                          f"{getattr(config, key)} is required")
        weights_path, _ = self._paths(version)
        try:
            blob = weights_path.read_bytes()
        except OSError as exc:
            raise ModelStoreError(f"model version {version}: weights unreadable ({exc})") from None
        if hashlib.sha256(blob).hexdigest() != meta.sha256:
            raise ModelStoreError(f"model version {version}: weights file corrupt (checksum mismatch)")
        try:
            state = load_safetensors_bytes(blob)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise ModelStoreError(f"model version {version}: weights not readable as safetensors ({exc})") from None
        model = IntentionModel(meta.config)
        own = model.state_dict()
        if set(state) != set(own):
            missing = sorted(set(own) - set(state))[:3]
            extra = sorted(set(state) - set(own))[:3]
            raise ModelStoreError(f"model version {version}: tensors do not fit the model "
                                  f"(missing {missing}, unexpected {extra})")
        for key, tensor in state.items():
            if tuple(tensor.shape) != tuple(own[key].shape):
                raise ModelStoreError(f"model version {version}: tensor {key} has shape {tuple(tensor.shape)}, "
                                      f"expected {tuple(own[key].shape)}")
            if not bool(torch.isfinite(tensor).all()):
                raise ModelStoreError(f"model version {version}: tensor {key} holds non-finite values")
        model.load_state_dict(state)
        model.eval()
        return LoadedModel(model=model, meta=meta)

    def load_latest(self, **requirements: Any) -> LoadedModel | None:
        """The newest version, or None when the store is empty (errors as :meth:`load`)."""
        version = self.latest()
        return None if version is None else self.load(version, **requirements)


def default_store_dir(workstation_id: str) -> Path:
    """The model store of one workstation: ``<runtime>/intention_models/<workstation_id>``."""
    from hrc_fl.paths import runtime_dir

    check_version_name(workstation_id)
    return runtime_dir() / "intention_models" / workstation_id


def base_store_dir() -> Path:
    """Where ``hrc-fl train-intention`` writes the base model that seeds empty workstation stores."""
    from hrc_fl.paths import runtime_dir

    return runtime_dir() / "intention_models" / "base"


def seed_from(store: ModelStore, base: ModelStore) -> str | None:
    """Copy the newest model of ``base`` into an empty ``store``; returns its version (None: nothing
    done because ``store`` has models or ``base`` is empty). Files are copied atomically."""
    if store.latest() is not None:
        return None
    version = base.latest()
    if version is None:
        return None
    store.root.mkdir(parents=True, exist_ok=True)
    src_w, src_m = base._paths(version)
    dst_w, dst_m = store._paths(version)
    atomic_write_bytes(dst_w, src_w.read_bytes())
    atomic_write_bytes(dst_m, src_m.read_bytes())
    return version
