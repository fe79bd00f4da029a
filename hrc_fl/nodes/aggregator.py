"""aggregator node (namespace /plant): the plant's federated aggregator, publishing its progress.

Runs the FedML server (:func:`hrc_fl.federated.transport.fedml_server.run_server`) in a background thread with the
strategy, quorum, deadline and rounds from the federation config; checkpoints every round and resumes
after a restart. Publishes ``federated/status`` (hrc_fl_msgs/FederatedStatus, LATCHED_QOS) on every state
change and ``/diagnostics``. The CLI twin is ``hrc-fl aggregator``.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from rclpy.node import Node

from hrc_fl.federated.core.fl_config import load_config
from hrc_fl.federated.core.learner import load_learner_module
from hrc_fl.nodes.common import (
    FL_THREAD_JOIN_S,
    Diagnostics,
    declare_parameters,
    join_worker,
    lower_thread_priority,
)
from hrc_fl.nodes.federated_status import FederatedStatusPublisher

PARAMETERS = {
    "federation_config": ("", "Federation YAML ('' = packaged config/federated.yaml)."),
    "state_dir": ("", "Checkpoint + model registry folder ('' = the config's state_dir)."),
    "audit_path": ("", "Append one JSON line per received update (tensor names, norms); '' = off."),
    "server_nice": (10, "Nice increment of the aggregator process (FedML, gRPC, aggregation): where it "
                        "shares a machine with workstation nodes, they keep the CPU first."),
}


class AggregatorNode(Node):
    def __init__(self) -> None:
        super().__init__("aggregator")
        p = declare_parameters(self, PARAMETERS)
        self._diag = Diagnostics(self, "aggregator")
        # The whole process is federation work: lower it before loading torch and the initial model; the
        # federation thread inherits the value.
        nice = lower_thread_priority(int(p["server_nice"]))
        self._diag.set_value("server_nice", "unsupported" if nice is None else nice)
        config = load_config(str(p["federation_config"]) or None)
        if p["state_dir"]:
            config = dataclasses.replace(config, state_dir=Path(str(p["state_dir"])))
        module = load_learner_module(config.learner_module)
        self._initial = module.initial_shared(config.learner_options, config.seed)
        self._audit = Path(str(p["audit_path"])) if p["audit_path"] else None
        self._stop = threading.Event()
        self._publish = FederatedStatusPublisher(self, self._diag, stop_event=self._stop)
        self._diag.set_value("state_dir", config.state_dir)
        self._thread = threading.Thread(target=self._run, args=(config,), name="fl-aggregator", daemon=True)
        self._thread.start()

    def _run(self, config) -> None:
        from hrc_fl.federated.transport.fedml_server import run_server  # FedML only in this (FL) process

        try:
            version = run_server(config, self._initial, on_status=self._publish, audit_path=self._audit,
                                 stop_event=self._stop)
            self.get_logger().info(f"federation finished with global model {version}")
        except (OSError, RuntimeError, ValueError) as exc:
            self._diag.problem("federation_failed", f"aggregator stopped: {exc}", error=True)

    def close(self) -> None:
        """Stop the federation (fedml_server checkpoints every closed round) within the shutdown bound."""
        self._stop.set()
        join_worker(self, self._thread, FL_THREAD_JOIN_S)


def main(args=None) -> None:
    from hrc_fl.nodes.common import run_node

    run_node(lambda: AggregatorNode(), args)


if __name__ == "__main__":
    main()
