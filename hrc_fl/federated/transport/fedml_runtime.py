"""The one place FedML is imported: offline, with every phone-home path disabled; ``fedml.init`` and its args.

Importing this module imports FedML (about 10 CPU-s; numpy/torch/torchvision come with it). That is safe
because only the FL processes import it: :mod:`hrc_fl.federated.transport.fedml_comm`, ``fedml_server`` and
``fedml_client`` import it at their top, and those are imported only by the aggregator and fl_client nodes
(inside the thread that runs the federation) and their ``hrc-fl`` commands. The pure helpers that tests and
the benchmark use (:mod:`hrc_fl.federated.transport.fedml_wire`) do not import it. The FedML names the other modules
subclass are re-exported from here, so no other module imports ``fedml`` itself (import order would
otherwise decide whether the offline setup ran first). Importing the fl_client node module did not grow
with the split (it imports no FedML, before or after; test_fl_fedml_units checks that): measured 6.25 s on
main and 4.51 s here (median of 3, load ~5.5 on 2 cores, noise), and the FL path after it 6.18 s vs 3.92 s.

FedML 0.9.6 faults handled here (FACTS.md): ``fedml.init()`` calls a remote config endpoint five times with
no timeout, and a stale ``~/.fedml`` env file can override ``FEDML_ENV_VERSION``: the variable is set before
the import, the fetch itself is replaced by a no-op, and init runs with ``check_env=False``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from hrc_fl.federated.core.fl_config import FederationConfig
from hrc_fl.federated.transport.grpc_transport import SecureTransport

LOG = logging.getLogger("hrc_fl.federated.fedml")

# Before `import fedml`: FedML reads the variable while it loads (a stale ~/.fedml/.env can override it,
# hence also the stub of the fetch below). Python's import lock makes this whole block run once.
os.environ["FEDML_ENV_VERSION"] = "local"
import fedml  # noqa: E402
import fedml.core.mlops as fedml_mlops  # noqa: E402
from fedml.core import ClientTrainer, ServerAggregator  # noqa: E402
from fedml.core.distributed.communication.base_com_manager import BaseCommunicationManager  # noqa: E402
from fedml.core.distributed.communication.grpc import grpc_comm_manager as fedml_grpc  # noqa: E402
from fedml.core.distributed.communication.message import Message  # noqa: E402
from fedml.core.distributed.fedml_comm_manager import FedMLCommManager  # noqa: E402

__all__ = ["BaseCommunicationManager", "ClientTrainer", "FedMLCommManager", "Message", "ServerAggregator",
           "fedml_init", "stop_on_event"]


def _no_remote_config(args: Any, version: str = "release") -> None:
    LOG.debug("fedml remote config fetch suppressed (offline federation)")


fedml_mlops.fetch_config = _no_remote_config


def _fedml_args(config: FederationConfig, rank: int) -> SimpleNamespace:
    """The FedML ``args`` namespace for a cross-silo horizontal process (seen only by the fedml_* modules)."""
    return SimpleNamespace(
        training_type="cross_silo", scenario="horizontal", backend="GRPC", using_mlops=False,
        enable_tracking=False, rank=rank, role="server" if rank == 0 else "client",
        comm_round=config.rounds.num_rounds, client_num_in_total=len(config.client_ranks),
        client_num_per_round=len(config.client_ranks), client_id_list=json.dumps(config.client_ranks),
        random_seed=config.seed, worker_num=len(config.client_ranks), run_id="hrc_fl",
        grpc_ipconfig_path="", dataset="hrc_fl", model="intention", federated_optimizer="FedAvg",
        device_type="cpu", using_gpu=False, enable_wandb=False, local_server="127.0.0.1",
        enable_dp=False, enable_attack=False, enable_defense=False, enable_fhe=False, enable_contribution=False,
    )


def fedml_init(config: FederationConfig, rank: int, transport: SecureTransport,
               comm_manager: type[BaseCommunicationManager]) -> SimpleNamespace:
    """``fedml.init`` for FL process ``rank``: offline, no environment collection, no log upload.

    ``comm_manager`` replaces FedML's insecure ``GRPCCommManager`` before any manager is built
    (``FedMLCommManager._init_manager`` reads that module attribute lazily when the backend is GRPC); it
    gets ``transport`` through ``args.hrc_transport``.
    """
    fedml_grpc.GRPCCommManager = comm_manager
    fedml.set_env_version("local")
    args = fedml.init(_fedml_args(config, rank), check_env=False, should_init_logs=False)
    args.hrc_transport = transport
    return args


def stop_on_event(stop_event: threading.Event | None, stop: Callable[[], None]) -> None:
    """Call ``stop`` (from a daemon thread) once ``stop_event`` is set; nothing when there is none."""
    if stop_event is None:
        return

    def wait_and_stop() -> None:
        stop_event.wait()
        stop()

    threading.Thread(target=wait_and_stop, name="fl-stop", daemon=True).start()
