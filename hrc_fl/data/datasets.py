"""Loaders of the real data sets that ``hrc-fl setup-assets`` extracts into :func:`hrc_fl.paths.data_dir`.

- Watch IMU (seglearn 1.2.5, BSD-3): 140 recordings, 10 subjects, both arms, 7 shoulder exercises,
  50 Hz; acceleration in g, angular rate in rad/s (the raw units of the data set).
- HandPose (pose-classification-kit 1.1.5, MIT): 11,204 OpenPose hands, 21 keypoints in MediaPipe's
  hand-landmark order, 27 classes, left and right hands.
- BodyPose (same package): 10,681 OpenPose BODY_25 skeletons, 20 posture / arm-signal classes.
- Photos (Debian ``opencv-doc``, BSD/Apache-2.0; matplotlib's sample data): see :data:`PHOTOS`.

Keypoint convention of the loaders: image-like 2D axes, x to the right and **y downwards** (the CSVs
store y upwards; the loaders flip it so that the points look like MediaPipe's image coordinates).
Origin and scale are whatever the data set used (hand: centroid / longest finger; body: bounding-box
centre / limb-length scale), so consumers must normalise translation and scale themselves.
Missing body keypoints (confidence 0 in OpenPose) are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrc_fl.paths import data_dir

SETUP_HINT = "run `hrc-fl setup-assets` (or scripts/setup.sh) first"

#: Exercise names of the watch data, index == ``WatchRecording.label``.
WATCH_CLASSES: tuple[str, ...] = ("PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW")
WATCH_RATE_HZ = 50.0

#: Relative paths (under :func:`hrc_fl.paths.data_dir`) of the files the loaders read.
WATCH_FILE = "watch/watch.npz"
HAND_POSE_FILE = "pose_classification_kit/HandPose_Dataset.csv"
BODY_POSE_FILE = "pose_classification_kit/BodyPose_Dataset.csv"
PHOTO_DIR = "photos"

#: Registry packages the photos ship in (:attr:`Photo.package`): Debian's opencv-doc and PyPI's matplotlib.
OPENCV_DOC_PACKAGE = "opencv-doc"
MATPLOTLIB_PACKAGE = "matplotlib"


@dataclass(frozen=True)
class Photo:
    """One real photo (or video) that setup copies to ``data_dir()/photos/<name>``.

    ``shows``: what it shows, with its size in pixels. ``package``: :data:`OPENCV_DOC_PACKAGE` or
    :data:`MATPLOTLIB_PACKAGE`. ``member``: its path in that package (opencv-doc: in the .deb's file system;
    matplotlib: under ``matplotlib.get_data_path()``).
    """

    shows: str
    package: str
    member: str


_OPENCV_HTML = "usr/share/doc/opencv-doc/opencv4/html/"
_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data/"

#: Every photo setup extracts (file name -> :class:`Photo`): the one list that the build, the manifest and
#: :func:`photo_path` read. All are plain files under ``data_dir()/photos``.
PHOTOS: dict[str, Photo] = {
    "handSrc.jpg": Photo("one open hand, palm up, lying flat (640x480)", OPENCV_DOC_PACKAGE,
                         _OPENCV_HTML + "handSrc.jpg"),
    "handDst.jpg": Photo("the same open hand, another view (640x480)", OPENCV_DOC_PACKAGE,
                         _OPENCV_HTML + "handDst.jpg"),
    "Back_Projection_Theory0.jpg": Photo("open palm facing the camera, fingers spread (200x200)",
                                         OPENCV_DOC_PACKAGE, _OPENCV_HTML + "Back_Projection_Theory0.jpg"),
    "Back_Projection_Theory2.jpg": Photo("open palm facing the camera, another hand (200x172)",
                                         OPENCV_DOC_PACKAGE, _OPENCV_HTML + "Back_Projection_Theory2.jpg"),
    "Histogram_Comparison_Source_1.jpg": Photo("open palm facing the camera, a third shot (200x172)",
                                               OPENCV_DOC_PACKAGE,
                                               _OPENCV_HTML + "Histogram_Comparison_Source_1.jpg"),
    "messi5.jpg": Photo("football player, full body, one hand visible (548x342)", OPENCV_DOC_PACKAGE,
                        _OPENCV_DATA + "messi5.jpg"),
    "vtest.avi": Photo("pedestrians seen from above, about 60 px tall: too small for pose (768x576 video)",
                       OPENCV_DOC_PACKAGE, _OPENCV_DATA + "vtest.avi"),
    "grace_hopper.jpg": Photo("portrait of a person, head and upper body (512x600)", MATPLOTLIB_PACKAGE,
                              "sample_data/grace_hopper.jpg"),
}
#: Photos of an open palm facing the camera: the gesture classifier must say STOP on each.
OPEN_PALM_PHOTOS: tuple[str, ...] = (
    "Back_Projection_Theory0.jpg", "Back_Projection_Theory2.jpg", "Histogram_Comparison_Source_1.jpg",
)
#: Photos with a whole person in view (pose should give 33 points).
PEOPLE_PHOTOS: tuple[str, ...] = ("messi5.jpg", "grace_hopper.jpg")

#: OpenPose BODY_25 keypoint names, index == column pair in the BodyPose CSV.
BODY_25_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
    "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)


def _data_file(relative: str) -> Path:
    path = data_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(f"data file missing: {path}; {SETUP_HINT}")
    return path


@dataclass(frozen=True)
class WatchRecording:
    """One recording: one subject doing one exercise with one arm.

    ``imu`` is (T, 6) float32 [ax, ay, az] in g and [wx, wy, wz] in rad/s, watch sensor frame, at
    ``rate_hz``. ``side`` is "left" or "right".
    """

    subject: int
    side: str
    label: int
    label_name: str
    imu: np.ndarray
    rate_hz: float = WATCH_RATE_HZ


def load_watch() -> list[WatchRecording]:
    """The 140 watch recordings (10 subjects) in the data set's order."""
    with np.load(_data_file(WATCH_FILE), allow_pickle=False) as f:
        imu = f["imu"].astype(np.float32)
        offsets = f["offsets"]
        labels = f["label"]
        subjects = f["subject"]
        sides = f["side"]
    out = []
    for i in range(len(labels)):
        out.append(WatchRecording(
            subject=int(subjects[i]), side="right" if int(sides[i]) == 1 else "left",
            label=int(labels[i]), label_name=WATCH_CLASSES[int(labels[i])],
            imu=imu[offsets[i]:offsets[i + 1]].copy()))
    return out


@dataclass(frozen=True)
class HandPoseData:
    """HandPose data set: ``points_xy`` (N, 21, 2) float32 (x right, y down, centroid origin, scale =
    longest finger), ``labels`` (N,) int64 index into ``class_names`` (27 names), ``handedness`` (N,)
    "left"/"right" (the person's hand as OpenPose reported it)."""

    points_xy: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    handedness: np.ndarray


@dataclass(frozen=True)
class BodyPoseData:
    """BodyPose data set: ``points_xy`` (N, 25, 2) float32 in BODY_25 order (:data:`BODY_25_NAMES`;
    x right, y down, NaN where OpenPose saw no keypoint), ``labels`` (N,) int64 into ``class_names``
    (20 names)."""

    points_xy: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    import csv

    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [row for row in reader if row]
    return header, rows


def _sorted_class_names(names: set[str]) -> tuple[str, ...]:
    # digits first in numeric order, then words alphabetically: stable, independent of the CSV order
    return tuple(sorted(names, key=lambda n: (0, int(n), "") if n.isdigit() else (1, 0, n)))


def load_hand_pose() -> HandPoseData:
    """The 11,204 hand samples of pose-classification-kit (27 classes, 21 keypoints each)."""
    header, rows = _read_csv(_data_file(HAND_POSE_FILE))
    if header[:3] != ["label", "hand", "accuracy"] or len(header) != 3 + 42:
        raise ValueError(f"unexpected HandPose CSV header: {header[:5]}...")
    class_names = _sorted_class_names({r[0] for r in rows})
    index = {n: i for i, n in enumerate(class_names)}
    xy = np.asarray([r[3:] for r in rows], dtype=np.float32).reshape(-1, 21, 2)
    xy[:, :, 1] *= -1.0  # CSV y points up; image y points down
    return HandPoseData(
        points_xy=xy, labels=np.asarray([index[r[0]] for r in rows], dtype=np.int64),
        class_names=class_names, handedness=np.asarray([r[1] for r in rows]))


def load_body_pose() -> BodyPoseData:
    """The 10,681 BODY_25 skeletons of pose-classification-kit (20 classes)."""
    header, rows = _read_csv(_data_file(BODY_POSE_FILE))
    if header[:2] != ["label", "accuracy"] or len(header) != 2 + 50:
        raise ValueError(f"unexpected BodyPose CSV header: {header[:5]}...")
    class_names = _sorted_class_names({r[0] for r in rows})
    index = {n: i for i, n in enumerate(class_names)}
    xy = np.asarray([r[2:] for r in rows], dtype=np.float32).reshape(-1, 25, 2)
    # OpenPose writes (0, 0) for a keypoint it did not find; the kit's normalisation leaves it at 0
    missing = np.all(xy == 0.0, axis=2)
    xy[:, :, 1] *= -1.0
    xy[missing] = np.nan
    return BodyPoseData(points_xy=xy, labels=np.asarray([index[r[0]] for r in rows], dtype=np.int64),
                        class_names=class_names)


def photo_path(name: str) -> Path:
    """Path of a real photo (a name of :data:`PHOTOS`)."""
    if name not in PHOTOS:
        raise KeyError(f"unknown photo {name!r}; known: {sorted(PHOTOS)}")
    return _data_file(f"{PHOTO_DIR}/{name}")
