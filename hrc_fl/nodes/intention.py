"""intention node: fuses wrist IMU, hand landmarks and body pose into an IntentionEstimate.

Subscribes ``wearable/imu`` (sensor_msgs/Imu, SENSOR_QOS, depth ``imu_queue_depth``), ``hands/landmarks``
(hrc_fl_msgs/HandLandmarks, RESULT_QOS), ``humans/bodies/tracked`` (hrc_fl_msgs/BodyPoseArray, RESULT_QOS) and
``intention/model_available`` (std_msgs/String = model version, LATCHED_QOS). Publishes
``intention/estimate`` (hrc_fl_msgs/IntentionEstimate, RESULT_QOS) and ``/diagnostics``.

Streams are aligned by header stamps (:mod:`hrc_fl.intention.alignment`). ``estimate_trigger``:
``timer`` estimates at ``rate_hz`` for reference time now - ``alignment_delay_s``; ``imu`` estimates on
every ``imu_decimation``-th IMU message at that message's stamp (deterministic with replays and bags).
No model in the store: nothing is published (a guess with confidence 0 would still look like an
answer to a consumer), one WARN line + diagnostic says which command creates one, and the diagnostics
value ``model_version`` reads ``none`` until a model is active. (Diagnostics.problem is called with WARN only:
rclpy refuses a second severity from the same logging call site, see the report.)
A new version is loaded and validated in a background thread and swapped in between two estimates;
a corrupt or incompatible version is rejected with one log line + diagnostic, the previous model stays.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import torch
from hrc_fl_msgs.msg import IntentionEstimate
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import String

from hrc_fl.intention.estimator import Estimate, IntentionEstimator
from hrc_fl.intention.labels import INTENTION_LABELS, INTENTION_LABELS_DESCRIPTION
from hrc_fl.intention.model_store import (
    ModelStore,
    ModelStoreError,
    base_store_dir,
    default_store_dir,
    seed_from,
)
from hrc_fl.nodes.common import (
    LATCHED_QOS,
    RESULT_QOS,
    SENSOR_QOS,
    Diagnostics,
    declare_parameters,
    join_worker,
    s_to_stamp,
)
from hrc_fl.nodes.intention_inputs import FEED_PARAMETERS, IntentionInputFeed, alignment_config

PARAMETERS = {
    **FEED_PARAMETERS,
    "workstation_id": ("ws1", "Workstation id; names the default model store folder."),
    "worker_id": ("worker1", "Worker id written into every estimate."),
    "labels": (list(INTENTION_LABELS), INTENTION_LABELS_DESCRIPTION),
    "model_store_dir": ("", "Model store folder ('' = <runtime>/intention_models/<workstation_id>)."),
    "seed_store_dir": ("", "Store copied into an empty model store at start ('' = <runtime>/intention_models/"
                       "base, written by `hrc-fl train-intention`; 'none' = never seed)."),
    "estimate_trigger": ("timer", "'timer' (rate_hz) or 'imu' (every imu_decimation-th IMU message)."),
    "rate_hz": (10.0, "Estimate rate for estimate_trigger=timer, Hz."),
    "imu_decimation": (5, "estimate_trigger=imu: one estimate per this many IMU messages."),
    "alignment_delay_s": (0.05, "Timer trigger: estimate for now minus this delay (lets late streams arrive), s."),
    "torch_threads": (1, "torch intra-op threads for inference (1: the model is tiny, more threads only "
                      "add spin-waiting on a busy machine)."),
    "imu_queue_depth": (50, "Depth of the best-effort wearable/imu subscription queue (1 s at 50 Hz, so a "
                        "busy moment does not drop samples)."),
    "imu_buffer_samples": (1000, "Capacity of the IMU buffer (samples)."),
    "observation_buffer": (64, "Capacity of the hands and pose buffers (observations)."),
}


class IntentionNode(Node):
    def __init__(self) -> None:
        super().__init__("intention")
        p = declare_parameters(self, PARAMETERS)
        self._worker_id = str(p["worker_id"])
        torch.set_num_threads(max(1, int(p["torch_threads"])))
        labels = [str(v) for v in p["labels"]]
        self._estimator = IntentionEstimator(labels)
        self._diag = Diagnostics(self, "intention")
        self._trigger = str(p["estimate_trigger"])
        if self._trigger not in ("timer", "imu"):
            raise ValueError(f"estimate_trigger must be timer or imu, got {self._trigger!r}")
        self._decimation = int(p["imu_decimation"])
        if self._decimation < 1:
            raise ValueError("imu_decimation must be >= 1")
        self._delay_s = float(p["alignment_delay_s"])
        self._imu_count = 0
        self._published = 0

        store_dir = str(p["model_store_dir"]) or str(default_store_dir(str(p["workstation_id"])))
        self._store = ModelStore(Path(store_dir))
        self._diag.set_value("model_store", store_dir)
        self._seed_store(str(p["seed_store_dir"]))
        loaded = None
        try:
            loaded = self._store.load_latest(labels=self._estimator.labels)
        except ModelStoreError as exc:
            self._diag.problem("model_rejected", f"{exc}; no model active")
        self._window = loaded.model.config.imu_window if loaded else 100
        self._rate_hz = loaded.model.config.imu_rate_hz if loaded else 50.0
        self._diag.set_value("model_version", "none")
        if loaded is not None:
            self._diag.set_value("model_version", loaded.meta.version)
            self._estimator.swap(loaded)
            self.get_logger().info(f"intention model {loaded.meta.version} active from {store_dir}")
        else:
            self._diag.problem("no_model", f"no intention model in {store_dir}: publishing no estimates until "
                               "one arrives; create one with `hrc-fl train-intention`")
        self._inputs = IntentionInputFeed(alignment_config(p, imu_window=self._window, imu_rate_hz=self._rate_hz),
                                          self._diag, min_pose_visibility=float(p["min_pose_visibility"]))

        self._pub = self.create_publisher(IntentionEstimate, "intention/estimate", RESULT_QOS)
        imu_qos = QoSProfile(history=SENSOR_QOS.history, depth=int(p["imu_queue_depth"]),
                             reliability=SENSOR_QOS.reliability, durability=SENSOR_QOS.durability)
        self._inputs.subscribe(self, imu_qos=imu_qos, on_imu_sample=self._on_imu_sample)
        self.create_subscription(String, "intention/model_available", self._on_model_available, LATCHED_QOS)
        self._load_queue: queue.Queue[str | None] = queue.Queue()
        self._loader = threading.Thread(target=self._load_loop, name="intention-model-loader", daemon=True)
        self._loader.start()
        if self._trigger == "timer":
            rate = float(p["rate_hz"])
            if not rate > 0:
                raise ValueError("rate_hz must be positive")
            self.create_timer(1.0 / rate, self._on_timer)

    # ----- model store -------------------------------------------------------------------------
    def _seed_store(self, seed_dir: str) -> None:
        if seed_dir == "none":
            return
        base = ModelStore(Path(seed_dir) if seed_dir else base_store_dir())
        try:
            version = seed_from(self._store, base)
        except (OSError, ModelStoreError) as exc:
            self._diag.problem("seed_failed", f"could not seed the model store from {base.root}: {exc}")
            return
        if version:
            self.get_logger().info(f"model store seeded with {version} from {base.root}")

    def _on_model_available(self, msg: String) -> None:
        self._load_queue.put(msg.data.strip())

    def _load_loop(self) -> None:
        while True:
            version = self._load_queue.get()
            if version is None:
                return
            if version == self._estimator.model_version:
                continue
            try:
                loaded = self._store.load(version, labels=self._estimator.labels)
                if loaded.model.config.imu_window != self._window or loaded.model.config.imu_rate_hz != self._rate_hz:
                    raise ModelStoreError(f"model version {version}: IMU window {loaded.model.config.imu_window} "
                                          f"@ {loaded.model.config.imu_rate_hz} Hz differs from the active "
                                          f"{self._window} @ {self._rate_hz} Hz")
            except ModelStoreError as exc:
                kept = self._estimator.model_version or "none"
                self._diag.problem("model_rejected", f"{exc}; keeping {kept}")
                continue
            self._estimator.swap(loaded)
            self._diag.set_value("model_version", version)
            self.get_logger().info(f"intention model swapped to {version}")

    # ----- inputs --------------------------------------------------------------------------------
    def _on_imu_sample(self, t_s: float) -> None:
        if self._trigger == "imu":
            self._imu_count += 1
            if self._imu_count % self._decimation == 0:
                self._estimate_and_publish(t_s)

    # ----- estimates -----------------------------------------------------------------------------
    def _on_timer(self) -> None:
        t_s = self.get_clock().now().nanoseconds * 1e-9 - self._delay_s
        self._estimate_and_publish(t_s)

    def _estimate_and_publish(self, t_s: float) -> None:
        inputs = self._inputs.at(t_s)
        estimate = self._estimator.estimate(inputs)
        if estimate is None:
            self._diag.set_value("last_skip", "no model" if not self._estimator.model_version else "no input")
            return
        self._pub.publish(self._to_msg(estimate, t_s))
        self._published += 1
        self._diag.set_value("published", self._published)
        self._diag.set_value("model_version", estimate.model_version)
        self._diag.set_value("present", ",".join(n for n, ok in zip(("imu", "hands", "pose"), estimate.present,
                                                                     strict=True) if ok) or "none")

    def _to_msg(self, estimate: Estimate, t_s: float) -> IntentionEstimate:
        msg = IntentionEstimate()
        msg.header.stamp = s_to_stamp(max(t_s, 0.0))
        msg.worker_id = self._worker_id
        msg.label = estimate.label
        msg.confidence = estimate.confidence
        msg.labels = list(estimate.labels)
        msg.probabilities = [float(v) for v in estimate.probabilities]
        msg.imu_present, msg.hands_present, msg.pose_present = estimate.present
        msg.model_version = estimate.model_version
        return msg

    def close(self) -> None:
        self._load_queue.put(None)
        join_worker(self, self._loader)


def main(args: list[str] | None = None) -> None:
    from hrc_fl.nodes.common import run_node

    run_node(lambda: IntentionNode(), args)


if __name__ == "__main__":
    main()
