"""camera node: publishes frames from a device, video, image folder/list or another image topic.

Topics (relative): ``camera/image_raw`` (sensor_msgs/Image, bgr8, SENSOR_QOS) and
``camera/camera_info`` (sensor_msgs/CameraInfo, SENSOR_QOS), both stamped with the capture time and
the configured optical frame id. A source that fails is reopened with exponential back-off; losses
and reopens are reported on /diagnostics. In a composed workstation process, :meth:`CameraNode.add_frame_listener`
hands every published frame to the perception pipeline in-process as well (no serialisation, no copy).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from hrc_fl.nodes.common import SENSOR_QOS, Diagnostics, RateMeter, declare_parameters, run_node
from hrc_fl.paths import resolve_param_file
from hrc_fl.perception.camera_sources import (
    CameraCalibration,
    ReopeningSource,
    SourceEvent,
    load_calibration,
    open_source,
    parse_source,
)

if TYPE_CHECKING:
    from hrc_fl.sim.scenario import ScenarioCameraSource

PARAMETERS = {
    "workstation_id": ("ws1", "Workstation id (informational; the namespace carries it)."),
    "source": ("", "'' = packaged replay photos, a folder, a video file, a device ('/dev/video0' or '0'), "
                   "'topic:<name>' to relay a camera driver's image topic, or 'scenario:<file>' to play a "
                   "scripted scenario's photos at its times (hrc_fl.sim.scenario; clock: /scenario/start)."),
    "replay_photos": (["handSrc.jpg"], "Photo names (hrc_fl.data.datasets.photo_path) for source ''."),
    "rate_hz": (30.0, "Publishing rate for file/folder/device sources, frames per second."),
    "still_hold_s": (2.0, "How long each still image of a folder/list/replay source is shown, seconds."),
    "width_px": (640, "Output width in pixels (frames are scaled to fit and padded); 0 = native."),
    "height_px": (480, "Output height in pixels; 0 = native."),
    "frame_id": ("camera_optical_frame", "frame_id of the published images (REP-103 optical frame)."),
    "camera_info_file": ("camera_info.yaml", "Calibration YAML (ROS camera_info format); a bare name is "
                                             "looked up in config/; '' = nominal 60 deg pinhole."),
    "reopen_initial_backoff_s": (0.5, "First wait before reopening a failed source, seconds."),
    "reopen_max_backoff_s": (10.0, "Longest wait between reopen attempts, seconds."),
}


def image_message(frame_bgr: np.ndarray, frame_id: str, stamp) -> Image:
    """A bgr8 sensor_msgs/Image; data assigned as bytes (a numpy array costs ~50 ms, FACTS.md)."""
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(frame_bgr.shape[0]), int(frame_bgr.shape[1])
    msg.encoding = "bgr8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(frame_bgr).tobytes()
    return msg


def camera_info_message(cal: CameraCalibration, frame_id: str, stamp) -> CameraInfo:
    msg = CameraInfo()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.width, msg.height = cal.width_px, cal.height_px
    msg.distortion_model = cal.distortion_model
    msg.d = [float(v) for v in cal.d]
    msg.k = [float(v) for v in cal.k]
    msg.r = [float(v) for v in cal.r]
    msg.p = [float(v) for v in cal.p]
    return msg


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("camera")
        self.params = p = declare_parameters(self, PARAMETERS)
        if not p["rate_hz"] > 0:
            raise ValueError(f"rate_hz must be positive, got {p['rate_hz']}")
        self.diag = Diagnostics(self, "camera")
        self.image_pub = self.create_publisher(Image, "camera/image_raw", SENSOR_QOS)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", SENSOR_QOS)
        self.rate = RateMeter()
        self._frame_listeners: list[Callable[[Image], None]] = []
        self._calibration = self._load_calibration(p["camera_info_file"])
        self._scaled: dict[tuple[int, int], CameraCalibration] = {}
        kind, value = parse_source(p["source"])
        self.source: ReopeningSource | None = None
        self.diag.set_value("source", p["source"] or "replay photos")
        if kind == "topic":
            self.create_subscription(Image, value, self._on_driver_image, SENSOR_QOS)
            self.get_logger().info(f"relaying images from {value}")
            return
        if kind == "scenario":
            factory = self._scenario_factory(value)
        else:
            replay: list[Path] = []
            if kind == "replay":
                from hrc_fl.data.datasets import photo_path

                replay = [photo_path(name) for name in p["replay_photos"]]

            def factory():
                return open_source(kind, value, width_px=p["width_px"], height_px=p["height_px"],
                                   fps=p["rate_hz"], replay_images=replay,
                                   hold_frames=max(1, round(p["still_hold_s"] * p["rate_hz"])))
        self.source = ReopeningSource(
            factory,
            initial_backoff_s=p["reopen_initial_backoff_s"], max_backoff_s=p["reopen_max_backoff_s"],
            on_event=self._on_source_event, description=p["source"])
        self.create_timer(1.0 / p["rate_hz"], self._on_timer)
        self.get_logger().info(f"camera source {p['source'] or 'replay photos'!r} at {p['rate_hz']} Hz")

    def _scenario_factory(self, path: str) -> Callable[[], ScenarioCameraSource]:
        """Source ``scenario:<file>``: the scenario's photos at its times (clock: /scenario/start)."""
        from hrc_fl.nodes.scenario_clock import ScenarioClock
        from hrc_fl.sim.scenario import ScenarioCameraSource, load_scenario

        scenario = load_scenario(path)  # a malformed file stops the node at start with its name
        clock = ScenarioClock(self)
        size = {"width_px": self.params["width_px"], "height_px": self.params["height_px"]}
        return lambda: ScenarioCameraSource(scenario, clock.seconds_now, **size)

    def _load_calibration(self, name: str) -> CameraCalibration | None:
        if not name:
            return None
        return load_calibration(resolve_param_file(name))

    def _calibration_for(self, width_px: int, height_px: int) -> CameraCalibration:
        key = (width_px, height_px)
        if key not in self._scaled:
            if self._calibration is None:
                self._scaled[key] = CameraCalibration.nominal(width_px, height_px)
            else:
                if (self._calibration.width_px, self._calibration.height_px) != key:
                    self.diag.problem("calibration_size", (
                        f"calibration is for {self._calibration.width_px}x{self._calibration.height_px}, "
                        f"frames are {width_px}x{height_px}: intrinsics scaled"))
                self._scaled[key] = self._calibration.scaled_to(width_px, height_px)
        return self._scaled[key]

    def _on_source_event(self, event: SourceEvent) -> None:
        self.diag.problem(f"source_{event.kind}", event.message, error=event.kind != "reopened")
        if self.source is not None:
            self.diag.set_value("reopen_count", self.source.reopen_count)

    def add_frame_listener(self, listener: Callable[[Image], None]) -> None:
        """Also hand every published image to ``listener`` (same process; it must return quickly)."""
        self._frame_listeners.append(listener)

    def _publish(self, image: Image) -> None:
        cal = self._calibration_for(image.width, image.height)
        # With the frame handed over in memory, serialising 0.9 MB for nobody is the largest cost left
        # outside MediaPipe: publish the image topic while someone (rviz, a recorder) subscribes to it.
        if not self._frame_listeners or self.image_pub.get_subscription_count() > 0:
            self.image_pub.publish(image)
        for listener in self._frame_listeners:
            listener(image)
        self.info_pub.publish(camera_info_message(cal, image.header.frame_id, image.header.stamp))
        self.rate.tick()
        self.diag.set_value("fps", f"{self.rate.rate_hz():.1f}")

    def _on_timer(self) -> None:
        assert self.source is not None
        frame = self.source.read()
        if frame is None:
            return
        stamp = self.get_clock().now().to_msg()
        self._publish(image_message(frame, self.params["frame_id"], stamp))

    def _on_driver_image(self, msg: Image) -> None:
        if msg.width == 0 or msg.height == 0:
            self.diag.problem("empty_image", f"driver sent a {msg.width}x{msg.height} image; not relayed")
            return
        msg.header.frame_id = self.params["frame_id"]
        self._publish(msg)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


def main(args: list[str] | None = None) -> None:
    run_node(CameraNode, args)


if __name__ == "__main__":
    main()
