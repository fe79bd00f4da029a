"""The intention model's input streams on the ROS side, shared by the intention and fl_client nodes.

Both nodes must build the model's inputs identically (the FL client stores the windows the intention
node would have seen), so both translate ``wearable/imu``, ``hands/landmarks`` and
``humans/bodies/tracked`` through one :class:`IntentionInputFeed`: message -> features
(:mod:`hrc_fl.intention.features`) -> :class:`~hrc_fl.intention.alignment.StreamAligner`, one
``/diagnostics`` problem line for each dropped or unusable message.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from hrc_fl_msgs.msg import BodyPoseArray, HandLandmarks
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Imu

from hrc_fl.intention.alignment import AlignedInputs, AlignmentConfig, StreamAligner
from hrc_fl.intention.features import hand_features, pose_features
from hrc_fl.nodes.common import RESULT_QOS, SENSOR_QOS, Diagnostics, stamp_to_s

#: ROS parameters of the feed that both nodes declare alike, name -> (default, description); each node
#: adds ``imu_buffer_samples`` and ``observation_buffer`` with its own sizes.
FEED_PARAMETERS: dict[str, tuple[Any, str]] = {
    "imu_max_age_s": (0.2, "Newest IMU sample older than this -> IMU absent, s."),
    "hands_max_age_s": (0.5, "Newest hand observation older than this -> hands absent, s."),
    "pose_max_age_s": (0.5, "Newest pose observation older than this -> pose absent, s."),
    "imu_max_span_factor": (1.5, "IMU window spanning more than this times its nominal length -> absent."),
    "min_pose_visibility": (0.5, "Pose joints below this visibility are treated as unseen."),
}


def alignment_config(params: Mapping[str, Any], *, imu_window: int, imu_rate_hz: float) -> AlignmentConfig:
    """The aligner's settings from a node's declared parameters (``FEED_PARAMETERS`` names)."""
    return AlignmentConfig(
        imu_window=imu_window, imu_rate_hz=imu_rate_hz, imu_max_age_s=float(params["imu_max_age_s"]),
        hands_max_age_s=float(params["hands_max_age_s"]), pose_max_age_s=float(params["pose_max_age_s"]),
        max_span_factor=float(params["imu_max_span_factor"]), imu_capacity=int(params["imu_buffer_samples"]),
        observation_capacity=int(params["observation_buffer"]))


class IntentionInputFeed:
    """Message callbacks that fill one :class:`StreamAligner` (thread-safe), and :meth:`at` to read it."""

    def __init__(self, config: AlignmentConfig, diag: Diagnostics, *, min_pose_visibility: float) -> None:
        self._aligner = StreamAligner(config)
        self._lock = threading.Lock()  # callbacks may run on other threads than the reader
        self._diag = diag
        self._min_visibility = float(min_pose_visibility)

    def subscribe(self, node: Node, *, imu_qos: QoSProfile = SENSOR_QOS,
                  on_imu_sample: Callable[[float], None] | None = None) -> None:
        """Subscribe ``node`` to the three input streams, each feeding this aligner: ``wearable/imu``
        (``imu_qos``), ``hands/landmarks`` and ``humans/bodies/tracked`` (RESULT_QOS). ``on_imu_sample``
        is called with the stamp (ROS time, s) of every IMU sample the aligner accepted, after it is in."""
        def imu_callback(msg: Imu) -> None:
            t_s = self.on_imu(msg)
            if t_s is not None and on_imu_sample is not None:
                on_imu_sample(t_s)

        node.create_subscription(Imu, "wearable/imu", imu_callback, imu_qos)
        node.create_subscription(HandLandmarks, "hands/landmarks", self.on_hands, RESULT_QOS)
        node.create_subscription(BodyPoseArray, "humans/bodies/tracked", self.on_bodies, RESULT_QOS)

    def at(self, t_s: float) -> AlignedInputs:
        """The model's inputs for a window ending at ``t_s`` (ROS time, s)."""
        with self._lock:
            return self._aligner.at(t_s)

    def on_imu(self, msg) -> float | None:
        """sensor_msgs/Imu -> aligner. Returns the sample's stamp (s), or None when it was dropped."""
        t_s = stamp_to_s(msg.header.stamp)
        a, w = msg.linear_acceleration, msg.angular_velocity
        sample = np.array([a.x, a.y, a.z, w.x, w.y, w.z], dtype=np.float32)
        with self._lock:
            reason = self._aligner.add_imu(t_s, sample)
        if reason is not None:
            self._diag.problem(f"imu_{reason}", f"dropped IMU message stamped {t_s:.6f} ({reason})")
            return None
        return t_s

    def on_hands(self, msg) -> None:
        """hrc_fl_msgs/HandLandmarks -> hand features -> aligner (unusable landmarks = hands absent)."""
        t_s = stamp_to_s(msg.header.stamp)
        try:
            features = hand_features(np.asarray(msg.image_points, dtype=np.float64), msg.handedness)
        except ValueError as exc:
            self._diag.problem("hands_invalid", f"hand landmarks stamped {t_s:.6f} unusable: {exc}")
            features = None  # a bad frame makes the modality absent, it does not reuse an old hand
        with self._lock:
            reason = self._aligner.add_hands(t_s, features)
        if reason is not None:
            self._diag.problem(f"hands_{reason}", f"dropped hand landmarks stamped {t_s:.6f} ({reason})")

    def on_bodies(self, msg) -> None:
        """hrc_fl_msgs/BodyPoseArray -> pose features of the highest-scoring body -> aligner."""
        t_s = stamp_to_s(msg.header.stamp)
        features = None
        if msg.bodies:
            body = max(msg.bodies, key=lambda b: b.score if math.isfinite(b.score) else -1.0)
            try:
                features = pose_features(np.asarray(body.image_points, dtype=np.float64),
                                         np.asarray(body.visibility, dtype=np.float64), self._min_visibility)
            except ValueError as exc:
                self._diag.problem("pose_invalid", f"body pose stamped {t_s:.6f} unusable: {exc}")
        with self._lock:
            reason = self._aligner.add_pose(t_s, features)
        if reason is not None:
            self._diag.problem(f"pose_{reason}", f"dropped body poses stamped {t_s:.6f} ({reason})")
