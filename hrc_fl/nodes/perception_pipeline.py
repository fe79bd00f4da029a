"""The composed workstation's perception: each camera frame decoded once, pose and hands on it.

The camera node hands its published ``sensor_msgs/Image`` to :meth:`SharedFramePipeline.submit` in the
same process (no serialisation). The frame is validated and converted to RGB once, then offered to the
pose and the hands node, each on its own thread with a one-slot mailbox (latest-frame-wins: a frame that
arrives while a detector is busy replaces the one waiting for it, so nothing queues, and a slow hands
detector never delays pose). Each publishes its usual topics stamped with the frame's capture time.
"""

from __future__ import annotations

from sensor_msgs.msg import Image

from hrc_fl.nodes.hands import HandsNode
from hrc_fl.nodes.image_frames import DecodedFrame, decode_frame
from hrc_fl.nodes.pose import PoseNode
from hrc_fl.perception.frame_fanout import LatestFrameFanOut
from hrc_fl.perception.image_decoding import ImageLimits
from hrc_fl.perception.latest_worker import LatestOnlyWorker


class SharedFramePipeline:
    """Camera frame -> one decode -> pose and hands, each on the newest frame (either may be None)."""

    def __init__(self, *, pose: PoseNode | None, hands: HandsNode | None) -> None:
        consumers = [n for n in (pose, hands) if n is not None]
        if not consumers:
            raise ValueError("SharedFramePipeline needs a pose or a hands node")
        for node in consumers:
            if node.worker is not None:
                raise ValueError(f"{node.get_name()} subscribes to images itself (images_from_topic=True)")
        # Bad frames are reported once, by the first consumer (pose when present: the safety input).
        self._diag = consumers[0].diag
        self.limits = ImageLimits(min(n.frames.limits.max_width_px for n in consumers),
                                  min(n.frames.limits.max_height_px for n in consumers))
        #: hands after pose on each frame, with its bodies (None: both straight from the camera)
        self._hands_after_pose: LatestOnlyWorker[tuple[Image, DecodedFrame, list]] | None = None
        if pose is not None and hands is not None and hands.searches_near_pose:
            self._hands_after_pose = LatestOnlyWorker(self._hands_with_pose(hands), name=hands.get_name(),
                                                      on_error=hands.frames.worker_failed)
            consumers = [pose]
        self._fanout: LatestFrameFanOut[tuple[Image, DecodedFrame]] = LatestFrameFanOut(
            [(n.get_name(), self._consumer(n), n.frames.worker_failed) for n in consumers])

    def _consumer(self, node: PoseNode | HandsNode):
        name = node.get_name()

        def run(item: tuple[Image, DecodedFrame]) -> None:
            msg, decoded = item
            frame = node.process_decoded(msg, decoded, self._fanout.dropped(name))
            if frame is not None and self._hands_after_pose is not None:
                self._hands_after_pose.submit((msg, decoded, frame.detections))
        return run

    def _hands_with_pose(self, hands: HandsNode):
        def run(item: tuple[Image, DecodedFrame, list]) -> None:
            msg, decoded, poses = item
            hands.process_decoded(msg, decoded, self._hands_after_pose.dropped, poses=poses)
        return run

    def submit(self, msg: Image) -> None:
        """The camera's frame listener (camera thread): decode once (about 1 ms), offer to both."""
        decoded = decode_frame(msg, self.limits, self._diag)
        if decoded is not None:
            self._fanout.submit((msg, decoded))

    def close(self) -> None:
        """Stop taking frames and wait for the ones in progress (before the nodes go)."""
        self._fanout.stop()
        if self._hands_after_pose is not None:
            self._hands_after_pose.stop()
