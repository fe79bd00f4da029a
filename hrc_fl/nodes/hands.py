"""hands node: MediaPipe hand landmarks and debounced gesture commands from camera images.

Subscribes ``camera/image_raw`` (sensor_msgs/Image, SENSOR_QOS). Publishes per detected hand
``hands/landmarks`` (hrc_fl_msgs/HandLandmarks) and ``hands/gesture`` (hrc_fl_msgs/HandGesture), both
RESULT_QOS and stamped with the image stamp. Only the newest frame is processed; bad frames give one
log line and a diagnostic and are skipped.
"""

from __future__ import annotations

import numpy as np
from hrc_fl_msgs.msg import HandGesture, HandLandmarks
from rclpy.node import Node
from sensor_msgs.msg import Image

from hrc_fl.nodes.common import RESULT_QOS, SENSOR_QOS, Diagnostics, declare_parameters, run_node
from hrc_fl.nodes.image_frames import DetectedFrame, FrameConsumer, FrameStage
from hrc_fl.perception.debounce import CommandDebouncer
from hrc_fl.perception.hand_search import NearWristHandSearch
from hrc_fl.perception.image_decoding import ImageLimits
from hrc_fl.perception.landmark_mlp_numpy import thresholded_class
from hrc_fl.perception.latest_worker import LatestOnlyWorker
from hrc_fl.perception.mediapipe_hands import DetectedHand, HandDetector
from hrc_fl.perception.scene_cut import SceneCutDetector

PARAMETERS = {
    "workstation_id": ("ws1", "Workstation id (informational; the namespace carries it)."),
    "image_topic": ("camera/image_raw", "Image topic to process."),
    "model_path": ("", "HandLandmarker .task file; '' = the built asset hand_landmarker.task."),
    "gesture_model_path": ("", "Gesture classifier weights; '' = the built asset."),
    "num_hands": (2, "Maximum number of hands to detect."),
    "min_detection_confidence": (0.5, "MediaPipe palm detection confidence, 0..1."),
    "min_presence_confidence": (0.5, "MediaPipe hand presence confidence, 0..1."),
    "min_tracking_confidence": (0.5, "MediaPipe tracking confidence, 0..1 (below: detect again)."),
    "gesture_min_confidence": (-1.0, "Below this classifier probability the gesture is NONE; < 0 = the threshold "
                                     "stored with the model (chosen on validation data for a stated "
                                     "false-command rate)."),
    "command_hold_frames": (3, "Frames a gesture must hold before it is published as a command."),
    "scene_cut_threshold": (40.0, "Mean grey-level change (0..255) of 32x24 thumbnails that counts as a scene cut "
                                  "(tracks are dropped, the frame is detected afresh); 0 = never."),
    "max_image_width_px": (4096, "Frames wider than this are rejected."),
    "max_image_height_px": (4096, "Frames taller than this are rejected."),
    "search_near_pose_wrists": (True, "With the pose node in the same workstation process: look for hands in crops "
                                      "around the pose's wrists of the same frame, one tracked hand per wrist "
                                      "(MediaPipe's palm detection only when that track is lost), and over the "
                                      "whole frame when no body is seen; false = the whole frame every time. A "
                                      "hands node on its own always searches the whole frame."),
    "search_interval_frames": (1, "A wrist (or, with no body seen, the whole frame) without a tracked hand is "
                                  "searched on every N-th processed frame only; 1 = every frame. A hand that "
                                  "appears is found up to N-1 frames later."),
    "min_wrist_visibility": (0.5, "Pose wrist visibility (0..1) from which a crop around that wrist is searched."),
}


def landmarks_message(hand: DetectedHand, header) -> HandLandmarks:
    msg = HandLandmarks()
    msg.header = header
    msg.handedness = hand.handedness
    msg.score = float(hand.score)
    msg.image_points = hand.image_points.astype(np.float32).ravel().tolist()
    msg.world_points = hand.world_points_m.astype(np.float32).ravel().tolist()
    return msg


class HandsNode(FrameConsumer, Node):
    def __init__(self, *, images_from_topic: bool = True) -> None:
        """``images_from_topic=False``: no image subscription; frames come decoded through
        :meth:`process_decoded` (the composed workstation's shared perception pipeline)."""
        super().__init__("hands")
        self.params = p = declare_parameters(self, PARAMETERS)
        from hrc_fl.perception.gesture_classifier import GESTURE_NAMES, GestureClassifier

        if not p["gesture_min_confidence"] <= 1.0:
            raise ValueError("gesture_min_confidence must be <= 1 (< 0 = the model's validated threshold)")
        self.gesture_names = GESTURE_NAMES
        self.classifier = GestureClassifier.load(p["gesture_model_path"] or None)
        self.gesture_min_confidence = (p["gesture_min_confidence"] if p["gesture_min_confidence"] >= 0.0
                                       else self.classifier.min_confidence)
        model = p["model_path"]
        if not model:
            from hrc_fl.data.assets import asset_path

            model = asset_path("hand_landmarker.task")

        def open_detector(num_hands: int) -> HandDetector:
            return HandDetector(model, num_hands=num_hands, min_detection_confidence=p["min_detection_confidence"],
                                min_presence_confidence=p["min_presence_confidence"],
                                min_tracking_confidence=p["min_tracking_confidence"])

        self.detector = open_detector(p["num_hands"])
        self.search = NearWristHandSearch(open_detector, num_hands=p["num_hands"],
                                          search_interval_frames=p["search_interval_frames"],
                                          min_wrist_visibility=p["min_wrist_visibility"],
                                          frame_detector=self.detector)
        CommandDebouncer(hold_frames=p["command_hold_frames"])  # ValueError now, not at the first hand
        self.debouncers: dict[str, CommandDebouncer] = {}
        self.searched = 0  # palm searches near the wrists / over the frame (the costly part), for /diagnostics
        self.diag = Diagnostics(self, "hands")
        self.frames: FrameStage[DetectedHand] = FrameStage(
            self._detect, limits=ImageLimits(p["max_image_width_px"], p["max_image_height_px"]),
            scene_cuts=SceneCutDetector(threshold=p["scene_cut_threshold"]), diag=self.diag)
        self.landmarks_pub = self.create_publisher(HandLandmarks, "hands/landmarks", RESULT_QOS)
        self.gesture_pub = self.create_publisher(HandGesture, "hands/gesture", RESULT_QOS)
        self.worker: LatestOnlyWorker[Image] | None = None
        if images_from_topic:
            self.worker = LatestOnlyWorker(self._process, name="hands", on_error=self.frames.worker_failed)
            self.create_subscription(Image, p["image_topic"], self.worker.submit, SENSOR_QOS)
        self.get_logger().info(f"hands: {p['num_hands']} hand(s) from {p['image_topic']}, gesture thresholds "
                               f"{np.round(self.gesture_min_confidence, 3).tolist()}")

    @property
    def searches_near_pose(self) -> bool:
        """Whether frames with their pose (``process_decoded(..., poses=...)``) are searched near the wrists."""
        return bool(self.params["search_near_pose_wrists"])

    def _detect(self, image_rgb: np.ndarray, timestamp_ms: int, *, new_scene: bool = False,
                poses: list | None = None) -> list[DetectedHand]:
        """The whole frame (no pose given: the node's own image subscription), or near the pose's wrists."""
        if poses is None:
            return self.detector.detect(image_rgb, timestamp_ms, new_scene=new_scene)
        hands = self.search.detect(image_rgb, timestamp_ms, new_scene=new_scene, poses=poses)
        last = self.search.last
        self.searched += last.searches
        self.diag.set_value("hand_searches", self.searched)
        self.diag.set_value("hands_tracked", last.tracked_runs)
        return hands

    def _publish(self, msg: Image, frame: DetectedFrame[DetectedHand], dropped_frames: int) -> None:
        hands = frame.detections
        seen: set[str] = set()
        for index, hand in enumerate(hands):
            key = hand.handedness or f"hand{index}"
            if key in seen:  # two hands labelled alike: keep their debouncers apart
                key = f"{key}{index}"
            seen.add(key)
            landmarks = landmarks_message(hand, msg.header)
            self.landmarks_pub.publish(landmarks)
            self.gesture_pub.publish(self._gesture(hand, key, landmarks, msg.width / msg.height))
        for key in list(self.debouncers):
            if key not in seen:
                self.debouncers[key].reset()
        self.diag.set_value("hands", len(hands))
        self.frames.report(frame, dropped_frames)

    def _gesture(self, hand: DetectedHand, key: str, landmarks: HandLandmarks,
                 aspect_ratio: float) -> HandGesture:
        try:
            probs = np.asarray(self.classifier.predict_proba(hand.image_points, hand.handedness,
                                                             aspect_ratio=aspect_ratio), dtype=np.float64)
        except ValueError as exc:  # degenerate landmarks (e.g. all points on one spot)
            self.diag.problem("gesture_classifier", f"hand not classified: {exc}")
            probs = np.zeros(len(self.gesture_names))
        code, confidence = thresholded_class(probs, self.gesture_min_confidence)
        debouncer = self.debouncers.setdefault(
            key, CommandDebouncer(hold_frames=self.params["command_hold_frames"], none_label=0))
        state = debouncer.update(code)
        msg = HandGesture()
        msg.header = landmarks.header
        msg.handedness = hand.handedness
        msg.gesture = code
        msg.gesture_name = self.gesture_names[code]
        msg.confidence = confidence
        msg.is_command = state.is_command
        msg.landmarks = landmarks
        return msg

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.search.close()  # closes self.detector too


def main(args: list[str] | None = None) -> None:
    run_node(HandsNode, args)


if __name__ == "__main__":
    main()
