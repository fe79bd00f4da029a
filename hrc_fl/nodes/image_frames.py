"""What the hands and pose nodes do alike with each camera frame (ROS side, no algorithm here).

One :class:`FrameStage` per node: decode the ``sensor_msgs/Image`` (limits, encodings), detect a scene
cut, run the node's MediaPipe detector in VIDEO mode with the frame's stamp, and report on
``/diagnostics``: one problem line for a frame it skips, and the stage times the perception benchmark
reads (stamp -> processing start, decode, detect, post-processing, total) with fps and dropped frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from hrc_fl.nodes.common import Diagnostics, RateMeter, stamp_to_s
from hrc_fl.perception.image_decoding import ImageError, ImageLimits, decode_raw_image
from hrc_fl.perception.latest_worker import LatestOnlyWorker
from hrc_fl.perception.mediapipe_runner import NonIncreasingTimestampError
from hrc_fl.perception.scene_cut import SceneCutDetector

Detection = TypeVar("Detection")


def stamp_ms(stamp) -> int:
    """ROS stamp -> integer milliseconds (MediaPipe VIDEO-mode timestamps)."""
    return int(stamp.sec) * 1000 + int(stamp.nanosec) // 1_000_000


@dataclass(frozen=True)
class DetectedFrame(Generic[Detection]):
    """One decoded frame and what the detector found in it, with its stage times (perf_counter, s)."""

    rgb: np.ndarray
    detections: list[Detection]
    new_scene: bool
    wait_ms: float       # frame stamp -> detection start (transport, decoding and queueing)
    started_s: float     # decoding started
    decoded_s: float
    detect_started_s: float  # detection started (later than decoded_s when the frame waited for the detector)
    detected_s: float


@dataclass(frozen=True)
class DecodedFrame:
    """A camera frame as RGB pixels with its source stamp and when decoding started/ended (perf_counter, s)."""

    rgb: np.ndarray
    stamp: object  # builtin_interfaces/Time of the source image
    wait_ms: float  # frame stamp -> decoding start (transport and queueing)
    started_s: float
    decoded_s: float


def decode_frame(msg, limits: ImageLimits, diag: Diagnostics) -> DecodedFrame | None:
    """``msg`` (sensor_msgs/Image) as RGB, or None after one problem line saying why it was skipped."""
    started = time.perf_counter()
    wait_ms = (time.time() - stamp_to_s(msg.header.stamp)) * 1e3
    try:
        rgb = decode_raw_image(height=msg.height, width=msg.width, encoding=msg.encoding, step=msg.step,
                               data=msg.data, is_bigendian=msg.is_bigendian, limits=limits)
    except ImageError as exc:
        diag.problem(exc.key, f"frame skipped: {exc}")
        return None
    return DecodedFrame(rgb, msg.header.stamp, wait_ms, started, time.perf_counter())


class FrameStage(Generic[Detection]):
    """Decode -> scene cut -> detect for one node's frames, and the per-frame diagnostics."""

    def __init__(self, detect: Callable[..., list[Detection]], *, limits: ImageLimits,
                 scene_cuts: SceneCutDetector, diag: Diagnostics) -> None:
        self._detect = detect
        self.limits = limits
        self.scene_cuts = scene_cuts
        self.diag = diag
        self.rate = RateMeter()
        self.cuts = 0

    def detect(self, msg) -> DetectedFrame[Detection] | None:
        """Detections in ``msg`` (sensor_msgs/Image), or None after reporting why the frame was skipped."""
        decoded = decode_frame(msg, self.limits, self.diag)
        return None if decoded is None else self.detect_decoded(decoded)

    def detect_decoded(self, frame: DecodedFrame, **hints: object) -> DetectedFrame[Detection] | None:
        """Detections in a frame decoded once for several stages (the composed workstation's pipeline);
        ``hints`` go to the detector as keywords (the hands node's: the pose of the same frame)."""
        detect_started = time.perf_counter()
        wait_ms = (time.time() - stamp_to_s(frame.stamp)) * 1e3
        new_scene = self.scene_cuts.is_cut(frame.rgb)
        try:
            detections = self._detect(frame.rgb, stamp_ms(frame.stamp), new_scene=new_scene, **hints)
        except NonIncreasingTimestampError as exc:
            self.diag.problem(exc.key, str(exc))
            return None
        return DetectedFrame(frame.rgb, detections, new_scene, wait_ms, frame.started_s, frame.decoded_s,
                             detect_started, time.perf_counter())

    def report(self, frame: DetectedFrame[Detection], dropped_frames: int) -> None:
        """fps, stage times (ms) and dropped frames of a processed frame on /diagnostics."""
        self.rate.tick()
        now = time.perf_counter()
        self.diag.set_value("fps", f"{self.rate.rate_hz():.1f}")
        self.diag.set_value("wait_ms", f"{frame.wait_ms:.1f}")
        self.diag.set_value("decode_ms", f"{(frame.decoded_s - frame.started_s) * 1e3:.1f}")
        self.diag.set_value("detect_ms", f"{(frame.detected_s - frame.detect_started_s) * 1e3:.1f}")
        self.diag.set_value("post_ms", f"{(now - frame.detected_s) * 1e3:.1f}")
        self.diag.set_value("total_ms", f"{(now - frame.detect_started_s) * 1e3:.1f}")  # detect + post
        self.diag.set_value("dropped_frames", dropped_frames)
        if frame.new_scene:
            self.cuts += 1
            self.diag.set_value("scene_cuts", self.cuts)

    def worker_failed(self, exc: BaseException) -> None:
        """The frame worker's error callback: one error line, the node keeps running."""
        self.diag.problem("internal_error", f"frame processing failed: {type(exc).__name__}: {exc}", error=True)



class FrameConsumer:
    """What the hands and pose nodes do alike with a frame: detect it from their own image subscription
    (``worker``) or from the shared pipeline's decoded frame, then their own ``_publish``."""

    frames: FrameStage
    worker: LatestOnlyWorker | None

    def _publish(self, msg, frame: DetectedFrame, dropped_frames: int) -> None:
        raise NotImplementedError

    def _process(self, msg) -> None:
        """The worker's handler for a ``sensor_msgs/Image`` of the node's own subscription."""
        frame = self.frames.detect(msg)
        if frame is not None:
            self._publish(msg, frame, self.worker.dropped if self.worker is not None else 0)

    def process_decoded(self, msg, decoded: DecodedFrame, dropped_frames: int,
                        **hints: object) -> DetectedFrame | None:
        """Detect and publish for a frame the shared pipeline decoded once (``msg``: its source image);
        returns what was detected (None: the frame was skipped)."""
        frame = self.frames.detect_decoded(decoded, **hints)
        if frame is not None:
            self._publish(msg, frame, dropped_frames)
        return frame
