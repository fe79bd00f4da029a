"""pose node: MediaPipe body pose, stable ids, One Euro smoothing, workstation-frame keypoints.

Subscribes ``camera/image_raw`` (sensor_msgs/Image, SENSOR_QOS), ``camera/camera_info`` and,
when ``depth_topic`` is set, a depth image (32FC1 metres or 16UC1 millimetres, registered to the
colour image; decoded under the colour frames' limits). Publishes ``humans/bodies/tracked``
(hrc_fl_msgs/BodyPoseArray, RESULT_QOS) for EVERY processed frame (empty when nobody is seen) and
``humans/bodies/<id>/pose`` (hrc_fl_msgs/BodyPose) per tracked body (ROS4HRI naming). The work after
MediaPipe is :class:`~hrc_fl.perception.body_pipeline.BodyPipeline`; this node translates messages.
"""

from __future__ import annotations

import threading

import numpy as np
from hrc_fl_msgs.msg import BodyPose, BodyPoseArray
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from hrc_fl.data.assets import asset_path
from hrc_fl.nodes.common import RESULT_QOS, SENSOR_QOS, Diagnostics, declare_parameters, run_node, stamp_to_s
from hrc_fl.nodes.image_frames import DetectedFrame, FrameConsumer, FrameStage
from hrc_fl.nodes.scenario_clock import ScenarioClock
from hrc_fl.perception.arm_signal_classifier import ArmSignalClassifier
from hrc_fl.perception.body_localisation import BodyScale, CameraExtrinsics, DepthImageModel, PinholeIntrinsics
from hrc_fl.perception.body_pipeline import BodyPipeline, LocatedBody
from hrc_fl.perception.body_tracker import BodyTracker
from hrc_fl.perception.camera_sources import CameraCalibration
from hrc_fl.perception.image_decoding import ImageError, ImageLimits, decode_depth_image
from hrc_fl.perception.latest_worker import LatestOnlyWorker
from hrc_fl.perception.mediapipe_pose import POSE_MODELS, DetectedPose, PoseDetector
from hrc_fl.perception.one_euro import OneEuroFilterBank
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


class PoseNode(FrameConsumer, Node):
    def __init__(self, *, images_from_topic: bool = True) -> None:
        """``images_from_topic=False``: no image subscription; frames come decoded through
        :meth:`process_decoded` (the composed workstation's shared perception pipeline)."""
        super().__init__("pose")
        self.params = p = declare_parameters(self, PARAMETERS)
        model = p["model_path"]
        if not model:
            if p["model"] not in POSE_MODELS:
                raise ValueError(f"model must be one of {sorted(POSE_MODELS)}, got {p['model']!r}")
            model = asset_path(POSE_MODELS[p["model"]])
        self.detector = PoseDetector(
            model, num_poses=p["num_poses"], min_detection_confidence=p["min_detection_confidence"],
            min_presence_confidence=p["min_presence_confidence"],
            min_tracking_confidence=p["min_tracking_confidence"])
        self.bodies = BodyPipeline(
            tracker=BodyTracker(max_distance=p["tracker_max_distance"],
                                max_missed_frames=p["tracker_max_missed_frames"]),
            smoothing=OneEuroFilterBank(min_cutoff_hz=p["one_euro_min_cutoff_hz"], beta=p["one_euro_beta"],
                                        derivative_cutoff_hz=p["one_euro_derivative_cutoff_hz"]),
            scale=BodyScale(p["nominal_shoulder_width_m"], p["nominal_torso_length_m"],
                            p["body_size_relative_sigma"]),
            extrinsics=CameraExtrinsics.from_xyz_rpy(list(p["camera_xyz_m"]), list(p["camera_rpy_rad"])),
            depth_model=DepthImageModel(p["depth_body_offset_m"], p["depth_sigma_m"]),
            landmark_sigma_m=p["landmark_sigma_m"],
            arm_classifier=ArmSignalClassifier.load(p["arm_signal_model_path"] or None),
            arm_signal_min_confidence=p["arm_signal_min_confidence"])
        self.body_pubs: dict[str, object] = {}
        self._lock = threading.Lock()
        self._calibration: CameraCalibration | None = None
        self._pinhole: tuple[tuple[CameraCalibration | None, int, int], PinholeIntrinsics] | None = None
        self._depth_m: np.ndarray | None = None
        self._warned_nominal = False
        self.diag = Diagnostics(self, "pose")
        self.frames: FrameStage[DetectedPose] = FrameStage(
            self.detector.detect, limits=ImageLimits(p["max_image_width_px"], p["max_image_height_px"]),
            scene_cuts=SceneCutDetector(threshold=p["scene_cut_threshold"]), diag=self.diag)
        self.tracked_pub = self.create_publisher(BodyPoseArray, "humans/bodies/tracked", RESULT_QOS)
        self.simulated_worker = None
        if p["simulated_worker"]:
            # here, not at the top: hrc_fl.sim.scenario loads the safety geometry's numba kernels, 0.5-2 s
            # of start-up (measured) that a real cell's pose node never needs
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
        try:
            calibration = CameraCalibration(msg.width, msg.height, "", msg.distortion_model, tuple(msg.k),
                                            tuple(msg.d), tuple(msg.r), tuple(msg.p))
        except ValueError as exc:
            self.diag.problem("bad_camera_info", f"CameraInfo {msg.width}x{msg.height} fx={msg.k[0]} ignored: {exc}")
            return
        with self._lock:
            if calibration != self._calibration:  # the camera repeats one CameraInfo with every frame
                self._calibration = calibration
        self.diag.set_value("intrinsics", "CameraInfo")

    def _on_depth(self, msg: Image) -> None:
        """A registered depth image: decoded under the colour frames' limits, or one problem line."""
        try:
            depth = decode_depth_image(height=msg.height, width=msg.width, encoding=msg.encoding, step=msg.step,
                                       data=msg.data, is_bigendian=msg.is_bigendian, limits=self.frames.limits)
        except ImageError as exc:
            self.diag.problem(f"depth_{exc.key}", f"depth image skipped: {exc}")
            return
        with self._lock:
            self._depth_m = depth

    def _intrinsics(self, width_px: int, height_px: int) -> PinholeIntrinsics:
        """The pinhole model for a frame of this size: the CameraInfo's, or nominal until one arrives."""
        with self._lock:
            calibration = self._calibration
        key = (calibration, width_px, height_px)
        if self._pinhole is not None and self._pinhole[0] == key:  # 20 us to rebuild: once per calibration and size
            return self._pinhole[1]
        if calibration is None:
            if not self._warned_nominal:
                self._warned_nominal = True
                self.get_logger().info("no CameraInfo yet: nominal intrinsics until one arrives")
                self.diag.set_value("intrinsics", "nominal (no CameraInfo)")
            calibration = CameraCalibration.nominal(width_px, height_px, self.params["nominal_fov_deg"])
        self._pinhole = (key, calibration.scaled_to(width_px, height_px).pinhole())
        return self._pinhole[1]

    def _publish(self, msg: Image, frame: DetectedFrame[DetectedPose], dropped_frames: int) -> None:
        t_s = stamp_to_s(msg.header.stamp)
        with self._lock:
            depth_m = self._depth_m
        result = self.bodies.process(frame.detections, t_s, self._intrinsics(msg.width, msg.height), depth_m)
        for body_id in result.dropped_ids:
            pub = self.body_pubs.pop(body_id, None)
            if pub is not None:
                self.destroy_publisher(pub)
            if self.simulated_worker is not None:
                self.simulated_worker.forget(body_id)
        for problem in result.problems:
            self.diag.problem("arm_signal_classifier", problem)
        out = BodyPoseArray()
        out.header = msg.header
        out.bodies = [self._message(body, msg) for body in result.bodies]
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

    def _message(self, body: LocatedBody, msg: Image) -> BodyPose:
        out = BodyPose()
        out.header = msg.header
        out.body_id = body.body_id
        out.score = body.score
        out.image_points = body.image_points.astype(np.float32).ravel().tolist()
        out.world_points = body.world_points_m.astype(np.float32).ravel().tolist()
        out.visibility = body.visibility.astype(np.float32).tolist()
        out.workstation_frame = self.params["workstation_frame"]
        out.workstation_points = body.workstation_points_m.astype(np.float32).ravel().tolist()
        out.position_uncertainty_m = body.position_uncertainty_m
        out.depth_used = body.depth_used
        out.arm_signal = body.arm_signal
        out.arm_signal_confidence = body.arm_signal_confidence
        return out

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.detector.close()


def main(args: list[str] | None = None) -> None:
    run_node(PoseNode, args)


if __name__ == "__main__":
    main()
