"""Faults through real FedML processes: aggregator killed and restarted, a client killed mid-round,
a NaN update and a x100-scaled update under a robust rule (coordinate-wise median).

One federation of 4 workstations runs once per test session: ws1 and ws2 honest (ws2 slow, its own process,
killed while training in round 3), ws3 sends x100-scaled updates, ws4 sends NaN (ws1, ws3, ws4 share one
process). The aggregator is SIGKILLed right after round 1 closes and restarted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from tests.fl_fedml_harness import FederationRun, read_log, run_once

pytestmark = pytest.mark.xdist_group(name="fl_fedml_faults")  # one worker runs the session fixture once

ROUNDS = 3


def _run_faulty_federation(root: Path) -> dict:
    # Prepare
    run = FederationRun(root, ["ws1", "ws2", "ws3", "ws4"],
                        rounds={"num_rounds": ROUNDS, "quorum": 2, "deadline_s": 15.0, "start_wait_s": 120.0},
                        strategy={"name": "median"}, learner_options={}, encoding="fp32")
    try:
        # Execute
        run.start_aggregator("aggregator_1")
        run.start_client("ws2", train_delay_s=5.0)  # its own process; killed while it "trains" in round 3
        run.start_clients("others", ["ws1", "ws3", "ws4"], faults="{ws3: scale100, ws4: nan}")
        run.wait_for_log("aggregator_1", r"round 1 closed", 300)
        run.kill("aggregator_1")
        run.start_aggregator("aggregator_2")
        run.wait_for_log("aggregator_2", r"round 3 opened", 300)
        run.wait_for_log("ws2", r"client ws2 training round 3", 120)
        run.kill("ws2")
        codes = {key: run.wait_exit(key, 240) for key in ["aggregator_2", "others"]}
    finally:
        run.stop_all()
    return run.summary(codes=codes)


@pytest.fixture(scope="session")
def faulty_federation(tmp_path_factory):
    return run_once(tmp_path_factory, "fl_fedml_faults", _run_faulty_federation)


def _meta(result: dict, round_index: int) -> dict:
    with open(Path(result["root"]) / "state" / "models" / f"v{round_index:05d}.safetensors", "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    return json.loads(header["__metadata__"]["meta"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_restarted_aggregator_resumes_from_checkpoint_without_losing_a_round(faulty_federation):
    run = faulty_federation
    second = read_log(run, "aggregator_2")
    # Assert
    assert faulty_federation["codes"]["aggregator_2"] == 0, second[-2000:]
    assert "resuming from checkpoint: round 1 completed" in second
    assert "round 1 opened" not in second
    assert json.loads((Path(run["root"]) / "state" / "checkpoint.json").read_text())["round"] == ROUNDS
    assert sorted(p.stem for p in (Path(run["root"]) / "state" / "models").glob("v*.safetensors")) == \
        ["v00000", "v00001", "v00002", "v00003"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_round_with_a_killed_client_closes_at_deadline_with_quorum(faulty_federation):
    run = faulty_federation
    meta = _meta(run, 3)
    assert "ws2" not in meta["accepted"] and "ws2" not in meta["rejected"]
    assert len(meta["accepted"]) >= 2
    assert "round 3 closed (deadline with" in read_log(run, "aggregator_2")
    assert faulty_federation["codes"]["others"] == 0
    assert all(f"client {n} finished" in read_log(run, "others") for n in ("ws1", "ws3", "ws4"))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_nan_update_is_rejected_every_round(faulty_federation):
    run = faulty_federation
    for round_index in range(1, ROUNDS + 1):
        meta = _meta(run, round_index)
        assert "ws4" not in meta["accepted"]
        assert "non-finite" in meta["rejected"]["ws4"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_median_bounds_the_global_step_despite_a_scaled_client(faulty_federation):
    run = faulty_federation
    audit = [json.loads(line) for line in Path(run["audit"]).read_text().splitlines()]
    norms = {line["client"]: line["delta_norm"] for line in audit if line["round"] == 1}
    before = load_file(str(Path(run["root"]) / "state" / "models" / "v00000.safetensors"))
    after = load_file(str(Path(run["root"]) / "state" / "models" / "v00001.safetensors"))
    step = math.sqrt(sum(float(((after[k] - before[k]) ** 2).sum()) for k in before))
    honest_bound = math.sqrt(norms["ws1"] ** 2 + norms["ws2"] ** 2)
    # Assert: the scaled client is far out, yet the median's step stays within the honest clients' reach.
    assert set(_meta(run, 1)["accepted"]) == {"ws1", "ws2", "ws3"}
    assert norms["ws3"] > 10 * honest_bound
    assert step <= honest_bound * (1 + 1e-5)
