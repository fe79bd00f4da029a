"""fl_client node: collects the worker's labelled windows and runs the workstation's federated client.

Subscribes ``task/events`` (hrc_fl_msgs/TaskEvent, RESULT_QOS: a labelled event; the window of
``window_s`` before its stamp carries the label) and the intention node's streams ``wearable/imu``
(SENSOR_QOS), ``hands/landmarks`` and ``humans/bodies/tracked`` (RESULT_QOS), aligned exactly as the
intention node does (:mod:`hrc_fl.intention.alignment`, :mod:`hrc_fl.intention.features`). Labelled windows
go to a local SQLite store (:mod:`hrc_fl.federated.core.sample_store`), and every ``unlabelled_step_s`` one
unlabelled IMU window for self-supervised training; they never leave the device.

A background thread runs the FedML client (:func:`hrc_fl.federated.transport.fedml_client.run_client`) with an
:class:`~hrc_fl.federated.core.intention_learner.IntentionLearner`: it trains when the aggregator opens a round,
sends only the shared encoders, and writes every new global model (with the local personal head) to the
local model store. Publishes ``intention/model_available`` (std_msgs/String = version, LATCHED_QOS) so the
intention node hot-swaps, and ``federated/status`` (hrc_fl_msgs/FederatedStatus, LATCHED_QOS).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

from hrc_fl_msgs.msg import TaskEvent
from rclpy.node import Node
from std_msgs.msg import String

from hrc_fl.federated.core.fl_config import load_config
from hrc_fl.federated.core.intention_learner import IntentionLearner
from hrc_fl.federated.core.sample_store import SampleStore
from hrc_fl.intention.labels import INTENTION_LABELS, INTENTION_LABELS_DESCRIPTION
from hrc_fl.intention.model import IntentionModelConfig
from hrc_fl.intention.model_store import ModelStore, default_store_dir
from hrc_fl.nodes.common import (
    FL_THREAD_JOIN_S,
    LATCHED_QOS,
    RESULT_QOS,
    Diagnostics,
    declare_parameters,
    join_worker,
    lower_thread_priority,
    stamp_to_s,
)
from hrc_fl.nodes.federated_status import FederatedStatusPublisher
from hrc_fl.nodes.intention_inputs import FEED_PARAMETERS, IntentionInputFeed, alignment_config
from hrc_fl.paths import runtime_dir

PARAMETERS = {
    **FEED_PARAMETERS,
    "training_nice": (10, "Nice increment of the federated-learning thread (FedML, gRPC, training): the "
                          "workstation's perception and safety nodes keep the CPU first. 0 = same priority."),
    "workstation_id": ("ws1", "Workstation id = this client's node name in the federation config."),
    "worker_id": ("worker1", "Worker whose samples this workstation stores (events for others are dropped)."),
    "labels": (list(INTENTION_LABELS), INTENTION_LABELS_DESCRIPTION),
    "federation_config": ("", "Federation YAML ('' = packaged config/federated.yaml)."),
    "run_federation": (True, "Run the FedML client (false = only collect labelled samples)."),
    "sample_db": ("", "SQLite sample store ('' = <runtime>/samples/<workstation_id>.sqlite)."),
    "model_store_dir": ("", "Model store folder ('' = <runtime>/intention_models/<workstation_id>)."),
    "max_samples_per_worker": (5000, "Retention: newest samples kept per worker."),
    "max_age_days": (30.0, "Retention: samples older than this are deleted, days."),
    "sample_step_s": (0.5, "Spacing of the windows stored inside one labelled event window, s."),
    "unlabelled_step_s": (2.0, "Spacing of the unlabelled IMU windows stored for self-supervised training "
                               "(IMU time, s; 0 = store none)."),
    "max_unlabelled_per_worker": (2000, "Retention: newest unlabelled IMU windows kept per worker."),
    "imu_window": (100, "IMU samples per window (must match the intention model)."),
    "imu_rate_hz": (50.0, "IMU sample rate the windows assume, Hz."),
    "imu_buffer_samples": (3000, "Capacity of the IMU buffer (samples; must cover the longest event window)."),
    "observation_buffer": (256, "Capacity of the hands and pose buffers (observations)."),
}


class FlClientNode(Node):
    def __init__(self) -> None:
        super().__init__("fl_client")
        p = declare_parameters(self, PARAMETERS)
        self._diag = Diagnostics(self, "fl_client")
        self._ws = str(p["workstation_id"])
        self._worker_id = str(p["worker_id"])
        self._labels = [str(v) for v in p["labels"]]
        self._step_s = float(p["sample_step_s"])
        if not self._step_s > 0:
            raise ValueError("sample_step_s must be > 0")
        self._window = int(p["imu_window"])
        self._inputs = IntentionInputFeed(alignment_config(p, imu_window=self._window,
                                                           imu_rate_hz=float(p["imu_rate_hz"])),
                                          self._diag, min_pose_visibility=float(p["min_pose_visibility"]))
        sample_db = str(p["sample_db"]) or str(runtime_dir() / "samples" / f"{self._ws}.sqlite")
        self._samples = SampleStore(sample_db, max_samples_per_worker=int(p["max_samples_per_worker"]),
                                    max_age_s=float(p["max_age_days"]) * 86400.0,
                                    max_unlabelled_per_worker=int(p["max_unlabelled_per_worker"]))
        self._unlabelled_step_s = float(p["unlabelled_step_s"])
        if not self._unlabelled_step_s >= 0:
            raise ValueError("unlabelled_step_s must be >= 0")
        self._last_unlabelled_s: float | None = None
        self._diag.set_value("sample_db", sample_db)
        self._diag.set_value("samples", self._samples.count(self._worker_id))
        self._diag.set_value("unlabelled_windows", self._samples.count_unlabelled(self._worker_id))

        self._stop = threading.Event()
        self._publish_status = FederatedStatusPublisher(self, self._diag, stop_event=self._stop)
        self._model_pub = self.create_publisher(String, "intention/model_available", LATCHED_QOS)
        self.create_subscription(TaskEvent, "task/events", self._on_event, RESULT_QOS)
        self._inputs.subscribe(self, on_imu_sample=self._on_imu_sample)

        self._fl_thread: threading.Thread | None = None
        if bool(p["run_federation"]):
            config = load_config(str(p["federation_config"]) or None)
            store_dir = str(p["model_store_dir"]) or str(default_store_dir(self._ws))
            learner = IntentionLearner(
                worker_id=self._worker_id, labels=self._labels,
                model_config=IntentionModelConfig(num_classes=len(self._labels), imu_window=self._window,
                                                  imu_rate_hz=float(p["imu_rate_hz"])),
                model_store=ModelStore(Path(store_dir)), sample_store=self._samples,
                epochs=config.client.epochs, lr=config.client.lr, batch_size=config.client.batch_size, seed=config.seed,
                head_epochs=config.client.head_epochs, fine_tune_epochs=config.client.fine_tune_epochs,
                on_model=self._publish_model, self_supervised=config.client.self_supervised,
                stop_event=self._stop)
            self._training_nice = int(p["training_nice"])
            if self._training_nice < 0:
                raise ValueError("training_nice must be >= 0 (the FL thread never outranks safety)")
            self._fl_thread = threading.Thread(target=self._run_federation, args=(config, learner),
                                               name="fl-client", daemon=True)
            self._fl_thread.start()

    # ----- federation ----------------------------------------------------------------------------
    def _run_federation(self, config, learner: IntentionLearner) -> None:
        nice = lower_thread_priority(self._training_nice)  # before the import: FedML's import is CPU-heavy too
        self._diag.set_value("training_nice", "unsupported" if nice is None else nice)
        from hrc_fl.federated.transport.fedml_client import run_client  # FedML only in this (FL) process

        try:
            version = run_client(config, self._ws, learner, on_status=self._publish_status, stop_event=self._stop)
            self.get_logger().info(f"federation finished; local model {version}")
        except (OSError, RuntimeError, ValueError) as exc:
            self._diag.problem("federation_failed", f"federated client stopped: {exc}", error=True)

    def _publish_model(self, version: str) -> None:
        if self._stop.is_set():  # closing: the model is stored; the intention node finds it on restart
            return
        self._model_pub.publish(String(data=version))
        self.get_logger().info(f"new personalised model {version} available")

    # ----- samples ----------------------------------------------------------------------------------
    def _on_imu_sample(self, t_s: float) -> None:
        if self._unlabelled_step_s == 0:
            return
        last = self._last_unlabelled_s
        # IMU time went back (a replay restarted): start the spacing again
        if last is not None and last - self._unlabelled_step_s < t_s < last + self._unlabelled_step_s:
            return
        imu = self._inputs.at(t_s).imu
        if imu is None:
            return  # not a full window yet
        try:
            self._samples.add_unlabelled(self._worker_id, t_s, imu)
        except (ValueError, OSError, sqlite3.Error) as exc:
            self._diag.problem("unlabelled_store", f"unlabelled IMU window not stored: {exc}")
            return
        self._last_unlabelled_s = t_s
        self._diag.set_value("unlabelled_windows", self._samples.count_unlabelled(self._worker_id))

    def _on_event(self, msg: TaskEvent) -> None:
        t_end_s = stamp_to_s(msg.header.stamp)
        if msg.label not in self._labels:
            self._diag.problem("unknown_label", f"task event label {msg.label!r} not in the label space")
            return
        if msg.worker_id and msg.worker_id != self._worker_id:
            self._diag.problem("other_worker", f"task event for worker {msg.worker_id!r} ignored")
            return
        if not math.isfinite(msg.window_s) or msg.window_s < 0:
            self._diag.problem("bad_window", f"task event window_s={msg.window_s!r} is not a duration")
            return
        stored = 0
        for k in range(int(msg.window_s // self._step_s) + 1):
            inputs = self._inputs.at(t_end_s - k * self._step_s)
            if not inputs.any_present:
                continue
            self._samples.add(self._worker_id, msg.label, inputs.t_s, imu=inputs.imu, hands=inputs.hands,
                              pose=inputs.pose)
            stored += 1
        if stored == 0:
            self._diag.problem("no_inputs", f"no aligned inputs for the event at {t_end_s:.3f} s; nothing stored")
        self._diag.set_value("samples", self._samples.count(self._worker_id))

    def close(self) -> None:
        self._stop.set()
        if self._fl_thread is not None:
            join_worker(self, self._fl_thread, FL_THREAD_JOIN_S)
        self._samples.close()


def main(args=None) -> None:
    from hrc_fl.nodes.common import run_node

    run_node(lambda: FlClientNode(), args)


if __name__ == "__main__":
    main()
