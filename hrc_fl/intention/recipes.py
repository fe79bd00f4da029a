"""Training and evaluation recipes on the real data sets (used by the hrc-fl commands and the bench).

- IMU: the smartwatch recordings (7 exercises, 10 subjects), windows and the subject-wise,
  time-ordered split from :mod:`hrc_fl.intention.windows`.
- Hands / pose: the pose-classification-kit HandPose and BodyPose samples (no subject ids there, so a
  seeded random half/half split).
- Fusion: COMPOSED episodes. No data set records the three modalities together, so an episode joins
  an IMU window of watch class k with a real hand sample of ``COMPOSED_HAND_CLASSES[k]`` and a real body
  sample of ``COMPOSED_BODY_CLASSES[k]``. Every report of them says "composed".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hrc_fl.intention.features import POSE_FEATURE_DIM, hand_features, pose_features
from hrc_fl.intention.model import IntentionModel, IntentionModelConfig
from hrc_fl.intention.training import Samples, evaluate, fit_imu_normalisation, score, train_model
from hrc_fl.intention.windows import ImuRecording, WindowSet, WindowSpec, make_split

#: Composed episodes: watch class k is paired with these real hand / body classes (arbitrary but fixed).
COMPOSED_HAND_CLASSES: tuple[str, ...] = ("Stop", "Fight_Fist", "Ok", "Dislike", "Super", "1", "Water")
COMPOSED_BODY_CLASSES: tuple[str, ...] = ("Stand", "T", "Stand_LeftArmRaised", "Stand_RightArmRaised",
                                          "Traffic_AllStop", "MilitarySalute", "Traffic_LeftTurn")
#: MediaPipe-33 index -> BODY_25 index for the joints the pose features use (BODY_25 has no
#: separate inner/outer eye points; its eye is the MediaPipe eye centre).
MEDIAPIPE_FROM_BODY25: dict[int, int] = {0: 0, 2: 16, 5: 15, 7: 18, 8: 17, 11: 5, 12: 2, 13: 6, 14: 3,
                                         15: 7, 16: 4, 23: 12, 24: 9}


@dataclass(frozen=True)
class _Rec:
    subject: int
    label: int
    imu: np.ndarray


def load_watch_recordings() -> tuple[list[ImuRecording], tuple[str, ...]]:
    """The 140 watch recordings and their class names (hrc_fl.data, else seglearn directly)."""
    try:
        from hrc_fl.data.datasets import WATCH_CLASSES, load_watch

        return [_Rec(int(r.subject), int(r.label), r.imu) for r in load_watch()], tuple(WATCH_CLASSES)
    except FileNotFoundError:
        from seglearn.datasets import load_watch as seglearn_watch

        raw = seglearn_watch()
        return ([_Rec(int(s), int(y), np.asarray(x, np.float32)) for x, y, s in
                 zip(raw["X"], raw["y"], raw["subject"], strict=True)], tuple(str(n) for n in raw["y_labels"]))


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 8
    finetune_epochs: int = 16
    own_epochs: int = 24
    lr: float = 3e-3
    batch_size: int = 128
    seed: int = 0


def new_model(num_classes: int, window: int, rate_hz: float = 50.0, seed: int = 0) -> IntentionModel:
    """A freshly initialised model; the global torch RNG is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return IntentionModel(IntentionModelConfig(num_classes=num_classes, imu_window=window, imu_rate_hz=rate_hz))


def train_imu(windows: WindowSet, num_classes: int, window: int, settings: TrainSettings,
              epochs: int | None = None) -> IntentionModel:
    model = new_model(num_classes, window, seed=settings.seed)
    fit_imu_normalisation(model, windows.x)
    train_model(model, Samples(y=windows.y, imu=windows.x), epochs=epochs or settings.epochs, lr=settings.lr,
                batch_size=settings.batch_size, seed=settings.seed)
    return model


@dataclass
class SubjectRow:
    subject: int
    test_windows: int
    a_others: dict[str, float] = field(default_factory=dict)
    b_own: dict[str, float] = field(default_factory=dict)
    c_finetuned: dict[str, float] = field(default_factory=dict)


def evaluate_subjects(recordings: list[ImuRecording], num_classes: int, spec: WindowSpec,
                      settings: TrainSettings, subjects: list[int] | None = None) -> list[SubjectRow]:
    """Per subject: (a) trained on the other subjects' training windows, (b) on its own training
    windows only, (c) (a) with the personal head fine-tuned on its own training windows. All scored on
    the subject's test windows (the later part of each of its recordings)."""
    train, test = make_split(recordings, spec)
    rows = []
    for subject in subjects or sorted(set(train.subject.tolist())):
        own_tr = train.select(train.subject == subject)
        own_te = test.select(test.subject == subject)
        others = train.select(train.subject != subject)
        test_samples = Samples(y=own_te.y, imu=own_te.x)
        row = SubjectRow(subject=int(subject), test_windows=len(own_te))
        model = train_imu(others, num_classes, spec.window, settings)
        row.a_others = _metrics(evaluate(model, test_samples))
        train_model(model, Samples(y=own_tr.y, imu=own_tr.x), epochs=settings.finetune_epochs, lr=settings.lr,
                    batch_size=64, seed=settings.seed, part="personal")
        row.c_finetuned = _metrics(evaluate(model, test_samples))
        own = train_imu(own_tr, num_classes, spec.window, TrainSettings(**{**asdict(settings), "batch_size": 64}),
                        epochs=settings.own_epochs)
        row.b_own = _metrics(evaluate(own, test_samples))
        rows.append(row)
    return rows


def _metrics(scores) -> dict[str, float]:
    return {"accuracy": round(scores.accuracy, 4), "macro_f1": round(scores.macro_f1, 4)}


# ----- hands and pose (real data sets) and composed episodes -------------------------------------------
@dataclass(frozen=True)
class VectorSet:
    """Feature vectors of one modality with the composed class index (0..6) they stand for."""

    x: np.ndarray  # (N, D) float32
    y: np.ndarray  # (N,) int64


def body25_to_mediapipe(points_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(25, 2) BODY_25 (NaN = unseen) -> (33, 2) MediaPipe layout + (33,) visibility (1 seen, 0 not)."""
    out = np.full((33, 2), np.nan, dtype=np.float64)
    for mp_index, b25_index in MEDIAPIPE_FROM_BODY25.items():
        out[mp_index] = points_xy[b25_index]
    visibility = np.isfinite(out).all(axis=1).astype(np.float64)
    return out, visibility


def hand_vectors(seed: int = 0) -> tuple[VectorSet, VectorSet]:
    """Train/test hand features of the composed classes (random half/half split, seeded)."""
    from hrc_fl.data.datasets import load_hand_pose

    data = load_hand_pose()
    xs, ys = [], []
    for k, name in enumerate(COMPOSED_HAND_CLASSES):
        idx = np.flatnonzero(data.labels == data.class_names.index(name))
        for i in idx:
            try:
                xs.append(hand_features(data.points_xy[i], str(data.handedness[i])))
            except ValueError:
                continue  # a degenerate sample in the data set
            ys.append(k)
    return _halves(np.stack(xs), np.asarray(ys, np.int64), seed)


def pose_vectors(seed: int = 0) -> tuple[VectorSet, VectorSet]:
    """Train/test pose features of the composed classes (random half/half split, seeded)."""
    from hrc_fl.data.datasets import load_body_pose

    data = load_body_pose()
    xs, ys = [], []
    for k, name in enumerate(COMPOSED_BODY_CLASSES):
        for i in np.flatnonzero(data.labels == data.class_names.index(name)):
            points, visibility = body25_to_mediapipe(data.points_xy[i])
            try:
                xs.append(pose_features(points, visibility))
            except ValueError:
                continue  # shoulders not seen in this sample
            ys.append(k)
    return _halves(np.stack(xs), np.asarray(ys, np.int64), seed)


def _halves(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[VectorSet, VectorSet]:
    order = np.random.default_rng(seed).permutation(len(y))
    half = len(y) // 2
    a, b = order[:half], order[half:]
    return VectorSet(x[a].astype(np.float32), y[a]), VectorSet(x[b].astype(np.float32), y[b])


def compose(windows: WindowSet, hands: VectorSet, pose: VectorSet, seed: int) -> Samples:
    """COMPOSED episodes: each IMU window gets a random real hand and body sample of its class."""
    rng = np.random.default_rng(seed)
    h = np.zeros((len(windows), hands.x.shape[1]), np.float32)
    p = np.zeros((len(windows), POSE_FEATURE_DIM), np.float32)
    for k in np.unique(windows.y):
        rows = np.flatnonzero(windows.y == k)
        h[rows] = hands.x[rng.choice(np.flatnonzero(hands.y == k), size=len(rows))]
        p[rows] = pose.x[rng.choice(np.flatnonzero(pose.y == k), size=len(rows))]
    return Samples(y=windows.y, imu=windows.x, hands=h, pose=p)


def train_fused(train: Samples, num_classes: int, window: int, settings: TrainSettings,
                modality_dropout_p: float = 0.3) -> IntentionModel:
    """The multimodal model on (composed) samples with modality dropout."""
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        model = IntentionModel(IntentionModelConfig(num_classes=num_classes, imu_window=window,
                                                    modality_dropout_p=modality_dropout_p))
    assert train.imu is not None
    fit_imu_normalisation(model, train.imu)
    train_model(model, train, epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size,
                seed=settings.seed)
    return model


MODALITY_SUBSETS: dict[str, tuple[bool, bool, bool]] = {
    "imu+hands+pose": (True, True, True), "imu": (True, False, False), "hands": (False, True, False),
    "pose": (False, False, True), "imu+hands": (True, True, False), "hands+pose": (False, True, True),
}


def evaluate_subsets(model: IntentionModel, test: Samples) -> dict[str, dict[str, float]]:
    """Accuracy / macro-F1 with only some modalities present (the others marked absent)."""
    out = {}
    for name, flags in MODALITY_SUBSETS.items():
        present = np.tile(np.asarray(flags, np.float32), (len(test), 1))
        subset = Samples(y=test.y, imu=test.imu, hands=test.hands, pose=test.pose, present=present)
        from hrc_fl.intention.training import predict_proba

        pred = predict_proba(model, subset).argmax(axis=1)
        out[name] = _metrics(score(test.y, pred, model.config.num_classes))
    return out


@dataclass(frozen=True)
class ComposedResult:
    """The fused model trained on COMPOSED episodes and its scores by the modalities present."""

    model: IntentionModel
    by_modalities: dict[str, dict[str, float]]
    hands_test_samples: int
    pose_test_samples: int


def train_composed(train: WindowSet, test: WindowSet, num_classes: int, window: int, settings: TrainSettings,
                   seed: int) -> ComposedResult:
    """Train the fused model on COMPOSED episodes and score it (:func:`evaluate_subsets`).

    Training episodes join ``train``'s IMU windows with the training halves of the hand and body samples
    (split and composed with ``seed``); test episodes join ``test``'s windows with the held-out halves
    (composed with ``seed + 1``, so no pairing repeats). ``window``: IMU samples per window."""
    hands_tr, hands_te = hand_vectors(seed)
    pose_tr, pose_te = pose_vectors(seed)
    model = train_fused(compose(train, hands_tr, pose_tr, seed), num_classes, window, settings)
    subsets = evaluate_subsets(model, compose(test, hands_te, pose_te, seed + 1))
    return ComposedResult(model=model, by_modalities=subsets, hands_test_samples=len(hands_te.y),
                          pose_test_samples=len(pose_te.y))
