"""The composed workstation's perception: each camera frame decoded once, pose and hands on it at once.

The camera node hands its published ``sensor_msgs/Image`` to :meth:`SharedFramePipeline.submit` in the
same process (no serialisation). A one-slot mailbox keeps only the newest frame (latest-frame-wins: a
frame that arrives while the previous one is processed replaces any frame still waiting, so nothing
queues), the frame is validated and converted to RGB once, and the pose and hands nodes detect on it in
two threads and publish their usual topics, stamped with the frame's capture time.
"""

from __future__ import annotations

from sensor_msgs.msg import Image

from hrc_fl.nodes.hands import HandsNode
from hrc_fl.nodes.image_frames import DecodedFrame, decode_frame
from hrc_fl.nodes.pose import PoseNode
from hrc_fl.perception.image_decoding import ImageLimits
from hrc_fl.perception.latest_worker import LatestOnlyWorker
from hrc_fl.perception.parallel_stages import ParallelStages


class SharedFramePipeline:
    """Newest camera frame -> one decode -> pose and hands in parallel (either may be None)."""

    def __init__(self, *, pose: PoseNode | None, hands: HandsNode | None) -> None:
        consumers = [n for n in (pose, hands) if n is not None]
        if not consumers:
            raise ValueError("SharedFramePipeline needs a pose or a hands node")
        for node in consumers:
            if node.worker is not None:
                raise ValueError(f"{node.get_name()} subscribes to images itself (images_from_topic=True)")
        self._consumers = consumers
        # Bad frames are reported once, by the first consumer (pose when present: the safety input).
        self._diag = consumers[0].diag
        self.limits = ImageLimits(min(n.frames.limits.max_width_px for n in consumers),
                                  min(n.frames.limits.max_height_px for n in consumers))
        self._stages: ParallelStages[tuple[Image, DecodedFrame]] = ParallelStages(
            [(self._stage(n), n.frames.worker_failed) for n in consumers], name="perception")
        self.worker: LatestOnlyWorker[Image] = LatestOnlyWorker(self._process, name="perception",
                                                              on_error=consumers[0].frames.worker_failed)

    def _stage(self, node: PoseNode | HandsNode):
        def run(item: tuple[Image, DecodedFrame]) -> None:
            msg, decoded = item
            node.process_decoded(msg, decoded, self.worker.dropped)
        return run

    def submit(self, msg: Image) -> None:
        """The camera's frame listener: replaces a frame that is still waiting (counted as dropped)."""
        self.worker.submit(msg)

    def _process(self, msg: Image) -> None:
        decoded = decode_frame(msg, self.limits, self._diag)
        if decoded is not None:
            self._stages.run((msg, decoded))

    def close(self) -> None:
        """Stop taking frames and wait for the one in progress (before the nodes go)."""
        self.worker.stop()
        self._stages.close()
