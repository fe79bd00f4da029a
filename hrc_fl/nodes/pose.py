"""pose node: MediaPipe body pose, stable ids, One Euro smoothing, workstation-frame keypoints.

Subscribes ``camera/image_raw`` (sensor_msgs/Image, SENSOR_QOS), ``camera/camera_info`` and,
when ``depth_topic`` is set, a depth image (32FC1 metres or 16UC1 millimetres, registered to the
colour image). Publishes ``humans/bodies/tracked`` (hrc_fl_msgs/BodyPoseArray, RESULT_QOS) for EVERY
processed frame (empty when nobody is seen) and ``humans/bodies/<id>/pose`` (hrc_fl_msgs/BodyPose)
per tracked body (ROS4HRI naming).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from hrc_fl_msgs.msg import BodyPose, BodyPoseArray
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from hrc_fl.nodes.common import RESULT_QOS, SENSOR_QOS, Diagnostics, declare_parameters, run_node, stamp_to_s
from hrc_fl.nodes.image_frames import DetectedFrame, FrameConsumer, FrameStage
from hrc_fl.perception.body_localisation import (
    TORSO,
    BodyScale,
    CameraExtrinsics,
    PinholeIntrinsics,
    hip_depth_from_depth_image,
    locate_body,
    monocular_hip_depth,
)
from hrc_fl.perception.body_tracker import BodyTracker
from hrc_fl.perception.image_decoding import ImageError, ImageLimits
from hrc_fl.perception.landmark_mlp_numpy import thresholded_class
from hrc_fl.perception.latest_worker import LatestOnlyWorker
from hrc_fl.perception.mediapipe_pose import POSE_MODELS, DetectedPose, PoseDetector
from hrc_fl.perception.one_euro import OneEuroFilter
from hrc_fl.perception.scene_cut import SceneCutDetector

PARAMETERS = {
    "workstation_id": ("ws1", "Workstation id (informational; the namespace carries it)."),
    "image_topic": ("camera/image_raw", "Image topic to process."),
    "camera_info_topic": ("camera/camera_info", "CameraInfo of the image topic (intrinsics)."),
    "depth_topic": ("", "Registered depth image topic; '' = monocular estimate."),
    "model": ("lite", "PoseLandmarker model: 'lite' or 'full'."),
    "model_path": ("", "Explicit .task file; overrides 'model'."),
    "arm_signal_model_path": ("", "Arm-signal classifier weights; '' = the built asset."),
    "num_poses": (2, "Maximum number of bodies."),
    "min_detection_confidence": (0.5, "MediaPipe pose detection confidence, 0..1."),
    "min_presence_confidence": (0.5, "MediaPipe pose presence confidence, 0..1."),
    "min_tracking_confidence": (0.5, "MediaPipe tracking confidence, 0..1."),
    "scene_cut_threshold": (40.0, "Mean grey-level change (0..255) of 32x24 thumbnails that counts as a scene cut "
                                  "(tracks are dropped, the frame is detected afresh); 0 = never."),
    "max_image_width_px": (4096, "Frames wider than this are rejected."),
    "max_image_height_px": (4096, "Frames taller than this are rejected."),
    "workstation_frame": ("base_link", "Frame of workstation_points (the robot base)."),
    "camera_xyz_m": ([2.0, 0.0, 1.6], "Camera optical frame origin in the workstation frame, metres."),
    "camera_rpy_rad": ([-1.9198622, 0.0, 1.5707963], "Camera optical frame roll, pitch, yaw in the "
                                                     "workstation frame, radians (R = Rz Ry Rx)."),
    "nominal_fov_deg": (60.0, "Horizontal field of view assumed until a CameraInfo arrives, degrees."),
    "nominal_shoulder_width_m": (0.36, "Nominal adult shoulder (biacromial) width, metres."),
    "nominal_torso_length_m": (0.50, "Nominal shoulder-midpoint to hip-midpoint length, metres."),
    "body_size_relative_sigma": (0.10, "Relative 1-sigma spread of body sizes (monocular depth error)."),
    "landmark_sigma_m": (0.05, "1-sigma error of MediaPipe world landmarks, metres."),
    "depth_sigma_m": (0.05, "1-sigma error of the depth camera at working range, metres."),
    "depth_body_offset_m": (0.10, "Body surface to skeleton depth offset, metres."),
    "one_euro_min_cutoff_hz": (1.5, "One Euro filter cut-off at rest, Hz."),
    "one_euro_beta": (0.5, "One Euro filter speed coefficient."),
    "one_euro_derivative_cutoff_hz": (1.0, "One Euro filter derivative cut-off, Hz."),
    "tracker_max_distance": (0.2, "Largest centroid jump (fraction of the image) kept as the same body."),
    "tracker_max_missed_frames": (10, "Frames a body may be missing before its id is dropped."),
    "arm_signal_min_confidence": (0.6, "Below this probability the arm signal is NONE."),
    "simulated_worker": ("", "Scenario file (hrc_fl.sim.scenario): move each detected body's workstation "
                             "points so its centre follows the scripted path before publishing (simulation "
                             "and demo; clock: /scenario/start); '' = off (a real cell)."),
}


def _centroid(pose: DetectedPose) -> np.ndarray:
    vis = pose.visibility[list(TORSO)]
    pts = pose.image_points[list(TORSO), :2]
    weights = np.clip(vis, 1e-3, None)
    return (pts * weights[:, None]).sum(0) / weights.sum()


def _depth_image_m(msg: Image) -> np.ndarray:
    """Depth image -> float metres (32FC1 as is, 16UC1 millimetres); ImageError when malformed."""
    if msg.encoding == "32FC1":
        dtype, scale = np.dtype("<f4" if not msg.is_bigendian else ">f4"), 1.0
    elif msg.encoding in ("16UC1", "mono16"):
        dtype, scale = np.dtype("<u2" if not msg.is_bigendian else ">u2"), 0.001
    else:
        raise ImageError(f"unsupported depth encoding {msg.encoding!r} (use 32FC1 or 16UC1)")
    if msg.width == 0 or msg.height == 0 or msg.step < msg.width * dtype.itemsize:
        raise ImageError(f"malformed depth image {msg.width}x{msg.height} step {msg.step}")
    buf = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if buf.size != msg.step * msg.height:
        raise ImageError(f"depth image has {buf.size} bytes, expected {msg.step * msg.height}")
    rows = buf.reshape(msg.height, msg.step)[:, :msg.width * dtype.itemsize]
    return np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width).astype(np.float32) * scale


class PoseNode(FrameConsumer, Node):
    def __init__(self, *, images_from_topic: bool = True) -> None:
        """``images_from_topic=False``: no image subscription; frames come decoded through
        :meth:`process_decoded` (the composed workstation's shared perception pipeline)."""
        super().__init__("pose")
        self.params = p = declare_parameters(self, PARAMETERS)
        from hrc_fl.perception.arm_signal_classifier import ARM_SIGNAL_NAMES, ArmSignalClassifier

        self.arm_signal_names = ARM_SIGNAL_NAMES
        self.arm_classifier = ArmSignalClassifier.load(p["arm_signal_model_path"] or None)
        model = p["model_path"]
        if not model:
            if p["model"] not in POSE_MODELS:
                raise ValueError(f"model must be one of {sorted(POSE_MODELS)}, got {p['model']!r}")
            from hrc_fl.data.assets import asset_path

            model = asset_path(POSE_MODELS[p["model"]])
        self.detector = PoseDetector(
            model, num_poses=p["num_poses"], min_detection_confidence=p["min_detection_confidence"],
            min_presence_confidence=p["min_presence_confidence"],
            min_tracking_confidence=p["min_tracking_confidence"])
        self.extrinsics = CameraExtrinsics.from_xyz_rpy(list(p["camera_xyz_m"]), list(p["camera_rpy_rad"]))
        self.scale = BodyScale(p["nominal_shoulder_width_m"], p["nominal_torso_length_m"],
                               p["body_size_relative_sigma"])
        self.tracker = BodyTracker(max_distance=p["tracker_max_distance"],
                                   max_missed_frames=p["tracker_max_missed_frames"])
        self.filters: dict[str, OneEuroFilter] = {}
        self.body_pubs: dict[str, object] = {}
        self._lock = threading.Lock()
        self._camera_info: CameraInfo | None = None
        self._depth_m: np.ndarray | None = None
        self._warned_nominal = False
        self.diag = Diagnostics(self, "pose")
        self.frames: FrameStage[DetectedPose] = FrameStage(
            self.detector.detect, limits=ImageLimits(p["max_image_width_px"], p["max_image_height_px"]),
            scene_cuts=SceneCutDetector(threshold=p["scene_cut_threshold"]), diag=self.diag)
        self.tracked_pub = self.create_publisher(BodyPoseArray, "humans/bodies/tracked", RESULT_QOS)
        self.simulated_worker = None
        if p["simulated_worker"]:
            from hrc_fl.nodes.scenario_clock import ScenarioClock
            from hrc_fl.sim.scenario import SimulatedWorker, load_scenario

            self.simulated_worker = SimulatedWorker(load_scenario(p["simulated_worker"]))
            self.scenario_clock = ScenarioClock(self)
            self.get_logger().info(f"simulated worker: bodies follow the scenario {p['simulated_worker']}")
        self.worker: LatestOnlyWorker[Image] | None = None
        if images_from_topic:
            self.worker = LatestOnlyWorker(self._process, name="pose", on_error=self.frames.worker_failed)
            self.create_subscription(Image, p["image_topic"], self.worker.submit, SENSOR_QOS)
        self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_camera_info, SENSOR_QOS)
        if p["depth_topic"]:
            self.create_subscription(Image, p["depth_topic"], self._on_depth, SENSOR_QOS)
        self.get_logger().info(f"pose: model {model}, images from {p['image_topic']}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if msg.width > 0 and msg.height > 0 and msg.k[0] > 0 and msg.k[4] > 0:
            with self._lock:
                self._camera_info = msg
            self.diag.set_value("intrinsics", "CameraInfo")
        else:
            self.diag.problem("bad_camera_info", f"CameraInfo {msg.width}x{msg.height} fx={msg.k[0]} ignored")

    def _on_depth(self, msg: Image) -> None:
        try:
            depth = _depth_image_m(msg)
        except ImageError as exc:
            self.diag.problem("bad_depth_image", str(exc))
            return
        with self._lock:
            self._depth_m = depth

    def _intrinsics(self, width_px: int, height_px: int) -> PinholeIntrinsics:
        with self._lock:
            info = self._camera_info
        if info is None:
            if not self._warned_nominal:
                self._warned_nominal = True
                self.get_logger().info("no CameraInfo yet: nominal intrinsics until one arrives")
                self.diag.set_value("intrinsics", "nominal (no CameraInfo)")
            f = (width_px / 2.0) / math.tan(math.radians(self.params["nominal_fov_deg"]) / 2.0)
            return PinholeIntrinsics(f, f, width_px / 2.0, height_px / 2.0, width_px, height_px)
        sx, sy = width_px / info.width, height_px / info.height
        return PinholeIntrinsics(info.k[0] * sx, info.k[4] * sy, info.k[2] * sx, info.k[5] * sy,
                                 width_px, height_px)

    def _publish(self, msg: Image, frame: DetectedFrame[DetectedPose], dropped_frames: int) -> None:
        poses = frame.detections
        t_s = stamp_to_s(msg.header.stamp)
        update = self.tracker.update([_centroid(pose) for pose in poses])
        for body_id in update.dropped_ids:
            self.filters.pop(body_id, None)
            pub = self.body_pubs.pop(body_id, None)
            if pub is not None:
                self.destroy_publisher(pub)
            if self.simulated_worker is not None:
                self.simulated_worker.forget(body_id)
        intrinsics = self._intrinsics(msg.width, msg.height)
        with self._lock:
            depth_m = self._depth_m
        out = BodyPoseArray()
        out.header = msg.header
        for pose, body_id in zip(poses, update.ids, strict=True):
            out.bodies.append(self._body(pose, body_id, msg, t_s, intrinsics, depth_m))
        if self.simulated_worker is not None:
            self._simulate(out, t_s)
        self.tracked_pub.publish(out)
        for body in out.bodies:
            pub = self.body_pubs.get(body.body_id)
            if pub is None:
                pub = self.create_publisher(BodyPose, f"humans/bodies/{body.body_id}/pose", RESULT_QOS)
                self.body_pubs[body.body_id] = pub
            pub.publish(body)
        self.diag.set_value("bodies", len(out.bodies))
        self.frames.report(frame, dropped_frames)

    def _simulate(self, out: BodyPoseArray, t_s: float) -> None:
        """Scripted worker: shift each body along the scenario at its frame's capture time ``t_s``."""
        scenario_t_s = self.scenario_clock.seconds_at(t_s)
        for body in out.bodies:
            points = np.asarray(body.workstation_points, dtype=np.float64)
            shifted = self.simulated_worker.shift(body.body_id, points, scenario_t_s, t_s)
            body.workstation_points = shifted.astype(np.float32).ravel().tolist()

    def _body(self, pose: DetectedPose, body_id: str, msg: Image, t_s: float,
              intrinsics: PinholeIntrinsics, depth_m: np.ndarray | None) -> BodyPose:
        p = self.params
        filt = self.filters.get(body_id)
        if filt is None:
            filt = self.filters[body_id] = OneEuroFilter(
                min_cutoff_hz=p["one_euro_min_cutoff_hz"], beta=p["one_euro_beta"],
                derivative_cutoff_hz=p["one_euro_derivative_cutoff_hz"])
        smoothed = filt(np.concatenate([pose.image_points, pose.world_points_m]), t_s)
        image_points, world_points = smoothed[:33], smoothed[33:]
        depth = None
        depth_used = False
        if depth_m is not None:
            depth = hip_depth_from_depth_image(image_points, pose.visibility, depth_m,
                                               body_offset_m=p["depth_body_offset_m"], sigma_m=p["depth_sigma_m"],
                                               min_visibility=self.scale.min_visibility)
            depth_used = depth is not None
        if depth is None:
            depth = monocular_hip_depth(image_points, world_points, pose.visibility, intrinsics, self.scale)
        body = BodyPose()
        body.header = msg.header
        body.body_id = body_id
        body.score = float(pose.score)
        body.image_points = image_points.astype(np.float32).ravel().tolist()
        body.world_points = world_points.astype(np.float32).ravel().tolist()
        body.visibility = pose.visibility.astype(np.float32).tolist()
        body.workstation_frame = p["workstation_frame"]
        if depth is None:
            body.workstation_points = [math.nan] * 99
            body.position_uncertainty_m = math.inf
        else:
            located = locate_body(image_points, world_points, pose.visibility, intrinsics, self.extrinsics,
                                  depth, depth_used=depth_used, landmark_sigma_m=p["landmark_sigma_m"])
            body.workstation_points = located.points_m.astype(np.float32).ravel().tolist()
            body.position_uncertainty_m = float(located.position_uncertainty_m)
        body.depth_used = depth_used
        try:
            probs = np.asarray(self.arm_classifier.predict_proba(
                image_points[:, :2], pose.visibility, aspect_ratio=msg.width / msg.height), dtype=np.float64)
        except ValueError as exc:  # degenerate landmarks
            self.diag.problem("arm_signal_classifier", f"body not classified: {exc}")
            probs = np.zeros(len(self.arm_signal_names))
        code, confidence = thresholded_class(probs, p["arm_signal_min_confidence"])
        body.arm_signal = code
        body.arm_signal_confidence = confidence
        return body

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.detector.close()


def main(args: list[str] | None = None) -> None:
    run_node(PoseNode, args)


if __name__ == "__main__":
    main()
