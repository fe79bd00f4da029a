"""Hand-gesture classifier for the HRC command vocabulary, trained on the real HandPose data set.

The MLP predicts the data set's 27 fine classes plus :data:`~hrc_fl.perception.gesture_protocol.THUMB_SIDEWAYS`
(a thumb held sideways); HRC probabilities are sums over the fine classes each HRC gesture is made of
(:data:`HRC_FROM_HANDPOSE`), every other fine class adds to NONE. Training on the fine classes keeps NONE
(a mixed bag of 20 hand shapes) from blurring the decision boundary.

Features: hand shape in a canonical hand frame plus hand and thumb direction
(:mod:`hrc_fl.perception.hand_features`); training views: 3D rotations, perspective, jitter, mirrors
(:mod:`hrc_fl.perception.gesture_protocol`). The confidence threshold below which a hand is NONE is
chosen on the validation recordings for a stated false-command rate and stored with the weights
(:attr:`GestureClassifier.min_confidence`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hrc_fl.perception.hand_features import HAND_FEATURE_LAYOUT, normalise_hand, normalise_hands
from hrc_fl.perception.landmark_mlp_numpy import NumpyLandmarkMLP, load_classifier_weights

if TYPE_CHECKING:
    from hrc_fl.perception.landmark_mlp import LandmarkMLP

#: Index == ``hrc_fl_msgs/HandGesture`` code.
GESTURE_NAMES: tuple[str, ...] = ("NONE", "STOP", "CLOSED_FIST", "POINTING", "THUMB_UP", "THUMB_DOWN", "OK")
#: HandPose (pose-classification-kit) classes that make up each HRC gesture; all others are NONE.
#: STOP is an open palm towards the camera with all five fingers extended: the data set has it as
#: "Stop" (fingers together), "5" (fingers spread) and "Vulcan_Salute" (spread, gap between middle and
#: ring finger); real open-palm photos fall between "5" and "Vulcan_Salute". "Help" is a flat open hand
#: held sideways (fingers horizontal, thumb up): STOP must not depend on how the palm is turned
#: (issue 15), and that hand turned by 90 degrees is an open palm, so it is STOP too (the safe side).
#: "9" is OK's hand shape (index tip on the thumb tip, three fingers up: the sign-language 9 / F), which
#: no model can tell from "Ok" on a recording it has not seen (23.5 % of unseen "9" views were OK).
HRC_FROM_HANDPOSE: dict[str, tuple[str, ...]] = {
    "STOP": ("Stop", "5", "Vulcan_Salute", "Help"),
    "CLOSED_FIST": ("Fight_Fist", "Power_Fist"),
    "POINTING": ("1",),
    "THUMB_UP": ("Super",),
    "THUMB_DOWN": ("Dislike",),
    "OK": ("Ok", "9"),
}
FORMAT = "hrc_fl.gesture_classifier/2"
#: Share of the false-command budget given to STOP when choosing the thresholds.
STOP_BUDGET_SHARE = 0.5
STOP = GESTURE_NAMES.index("STOP")
#: Largest threshold: just above 1, i.e. "never" (a probability is at most 1).
MAX_THRESHOLD = float(np.nextafter(1.0, 2.0))


def hrc_index_of_fine(class_names: tuple[str, ...]) -> np.ndarray:
    """(num_fine,) HRC index of each fine class (0 = NONE)."""
    lookup = {fine: GESTURE_NAMES.index(hrc) for hrc, fines in HRC_FROM_HANDPOSE.items() for fine in fines}
    missing = {f for fines in HRC_FROM_HANDPOSE.values() for f in fines} - set(class_names)
    if missing:
        raise ValueError(f"HandPose classes missing from the data: {sorted(missing)}")
    return np.array([lookup.get(n, 0) for n in class_names], dtype=np.int64)


def fine_to_hrc_matrix(hrc_of_fine: np.ndarray) -> np.ndarray:
    """(num_fine, 7) 0/1 matrix: fine probabilities @ it = HRC probabilities."""
    return np.eye(len(GESTURE_NAMES))[np.asarray(hrc_of_fine, dtype=np.int64)]


def fine_to_hrc_proba(fine_proba: np.ndarray, hrc_of_fine: np.ndarray | None = None, *,
                      matrix: np.ndarray | None = None) -> np.ndarray:
    """(N, num_fine) -> (N, 7) by summing the fine probabilities of each HRC gesture (give ``matrix``
    from :func:`fine_to_hrc_matrix` to skip building it per call)."""
    m = fine_to_hrc_matrix(hrc_of_fine) if matrix is None else matrix
    # einsum, not ``@``: see landmark_mlp_numpy (OpenBLAS threads busy-wait between per-frame calls)
    return np.einsum("nf,fh->nh", np.asarray(fine_proba, dtype=np.float64), m)


@dataclass(frozen=True)
class GestureDecision:
    code: int          # index into GESTURE_NAMES (== HandGesture code)
    name: str
    confidence: float  # probability of the returned gesture (of the best one when it fell back to NONE)


def _per_class(min_confidence: float | np.ndarray) -> np.ndarray:
    t = np.broadcast_to(np.asarray(min_confidence, dtype=np.float64), (len(GESTURE_NAMES),))
    # above 1 is allowed: that gesture is never given (its mimics on validation were certain, p == 1)
    if not np.all((t >= 0.0) & (t <= MAX_THRESHOLD)):
        raise ValueError(f"min_confidence must be in [0, {MAX_THRESHOLD}], got {min_confidence}")
    return t


def decide(proba: np.ndarray, min_confidence: float | np.ndarray) -> GestureDecision:
    """Most probable gesture, or NONE when its probability is below ``min_confidence`` (one value, or
    one per class of :data:`GESTURE_NAMES`)."""
    t = _per_class(min_confidence)
    best = int(np.argmax(proba))
    conf = float(proba[best])
    if conf < t[best]:
        best = 0
    return GestureDecision(best, GESTURE_NAMES[best], conf)


def decide_batch(proba: np.ndarray, min_confidence: float | np.ndarray) -> np.ndarray:
    """(N, 7) -> (N,) gesture codes: the best class, NONE (0) where it is below its ``min_confidence``."""
    best = proba.argmax(axis=1)
    return np.where(proba.max(axis=1) >= _per_class(min_confidence)[best], best, 0)


class GestureClassifier:
    """Trained gesture MLP + its class mapping and validated threshold. Build with :meth:`load`."""

    def __init__(self, model: NumpyLandmarkMLP | LandmarkMLP, meta: dict) -> None:
        if meta.get("format") != FORMAT:
            raise ValueError(f"not a gesture classifier file of this version (format {meta.get('format')!r}, "
                             f"expected {FORMAT!r}); rebuild it with `hrc-fl setup-assets`")
        if meta.get("feature") != HAND_FEATURE_LAYOUT:
            raise ValueError(f"gesture classifier trained on features {meta.get('feature')!r}, this code computes "
                             f"{HAND_FEATURE_LAYOUT!r}; rebuild it with `hrc-fl setup-assets`")
        self._model = model
        self.meta = meta
        self.fine_class_names: tuple[str, ...] = tuple(meta["fine_class_names"])
        self._hrc_of_fine = np.asarray(meta["hrc_of_fine"], dtype=np.int64)
        self._to_hrc = fine_to_hrc_matrix(self._hrc_of_fine)
        #: (7,) per gesture: probability below which the best gesture becomes NONE, chosen on validation
        #: data for a stated false-command rate (see ``meta["threshold"]``).
        self.min_confidence = _per_class(np.asarray(meta["min_confidence"], dtype=np.float64)).copy()

    @classmethod
    def load(cls, path: Path | str | None = None) -> GestureClassifier:
        """Load weights (default: the asset built by ``hrc-fl setup-assets``) and the JSON meta beside them."""
        return cls(*load_classifier_weights(path, "gesture_classifier.safetensors"))

    def _mlp_proba(self, features: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(features)  # numpy (nodes) or torch (training, tests) model

    def predict_proba(self, image_points: np.ndarray, handedness: str, *, aspect_ratio: float = 1.0) -> np.ndarray:
        """(7,) probabilities over :data:`GESTURE_NAMES` for one hand.

        ``image_points``: (21, 2 or 3) MediaPipe normalised image coordinates (x/width, y/height, y down).
        ``handedness``: "Left"/"Right" (MediaPipe's label; a wrong label does no harm, training mirrors
        at random). ``aspect_ratio``: image width / height, so both axes are in one unit.
        ValueError on a malformed or degenerate hand.
        """
        feats = normalise_hand(image_points, handedness, aspect_ratio)[None]
        return fine_to_hrc_proba(self._mlp_proba(feats), matrix=self._to_hrc)[0]

    def predict_proba_batch(self, points_xy: np.ndarray, left: np.ndarray, aspect_ratio: float = 1.0) -> np.ndarray:
        """(N, 7) probabilities for a batch (N, 21, 2) with per-hand mirror flags ``left`` (N,)."""
        return fine_to_hrc_proba(self._mlp_proba(normalise_hands(points_xy, left, aspect_ratio)),
                                 matrix=self._to_hrc)


def threshold_for_false_command_rate(none_max_command_proba: np.ndarray, target_rate: float) -> float:
    """Smallest threshold at which at most ``target_rate`` of the NONE hands come out as a command.

    ``none_max_command_proba``: for each NONE-truth validation hand, the probability of its best class
    when that class is a command, else 0 (it is NONE at any threshold).
    """
    if not 0.0 <= target_rate < 1.0:
        raise ValueError(f"target false-command rate must be in [0, 1), got {target_rate}")
    p = np.sort(np.asarray(none_max_command_proba, dtype=np.float64))[::-1]
    allowed = int(np.floor(target_rate * len(p)))  # this many may pass
    if allowed >= len(p) or p[allowed] <= 0.0:
        return 0.0
    # a hand passes when p >= t: put t just above the (allowed+1)-th largest (above 1 when that one is 1)
    return float(np.nextafter(p[allowed], np.inf))


def thresholds_for_false_command_rate(none_proba: np.ndarray, target_rate: float) -> np.ndarray:
    """(7,) per-gesture thresholds from the probabilities (N, 7) of NONE-truth validation hands. STOP gets
    :data:`STOP_BUDGET_SHARE` of the false-command budget ``target_rate`` (a missed STOP is the worst
    error, a false one only stops the robot), the other 5 commands equal shares of the rest, so the total
    stays within the budget and a command that is easily mimicked does not raise the others' thresholds."""
    best, top = none_proba.argmax(axis=1), none_proba.max(axis=1)
    out = np.zeros(len(GESTURE_NAMES))
    other_share = (1.0 - STOP_BUDGET_SHARE) / (len(GESTURE_NAMES) - 2)
    for code in range(1, len(GESTURE_NAMES)):
        share = target_rate * (STOP_BUDGET_SHARE if code == STOP else other_share)
        out[code] = threshold_for_false_command_rate(np.where(best == code, top, 0.0), share)
    return out
