"""Scene-cut detection (ROS-free): tells when consecutive frames are not one continuous view.

MediaPipe's VIDEO mode tracks landmarks from the previous frame's region. After a cut (a replay switching
photos, a camera reopened or switched) that tracking can hold on to a "body" that is not there: measured
on the opencv-doc photos, a pose tracked on one photo stayed, with presence 0.99, on a following photo
without any person. A cut is declared when the image size changes or the mean absolute difference of
small grey thumbnails exceeds a threshold; the detectors then drop their tracks.
"""

from __future__ import annotations

import cv2
import numpy as np


class SceneCutDetector:
    """``threshold`` is a mean absolute grey-level difference (0..255) between 32x24 thumbnails;
    0 disables detection (never a cut)."""

    def __init__(self, *, threshold: float = 40.0, thumb_size: tuple[int, int] = (32, 24)) -> None:
        if not 0.0 <= threshold <= 255.0:
            raise ValueError(f"threshold must be in [0, 255], got {threshold}")
        self.threshold = threshold
        self.thumb_size = thumb_size
        self._previous: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None

    def is_cut(self, image_rgb: np.ndarray) -> bool:
        """True when ``image_rgb`` does not continue the previous frame (the first frame is no cut)."""
        grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY) if image_rgb.ndim == 3 else image_rgb
        thumb = cv2.resize(grey, self.thumb_size, interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, shape = self._previous, self._shape
        self._previous, self._shape = thumb, image_rgb.shape
        if previous is None or self.threshold <= 0.0:
            return False
        if shape != image_rgb.shape:
            return True
        return float(np.mean(np.abs(thumb - previous))) > self.threshold
