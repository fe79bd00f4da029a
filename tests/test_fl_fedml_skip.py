"""Real FedML processes: a workstation with too few labelled samples tells the aggregator it skips the
round, so the round closes with the others' updates instead of waiting for its deadline."""

from __future__ import annotations

import json

import pytest

from tests.fl_fedml_harness import FederationRun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_client_with_too_few_samples_skips_and_the_round_closes_without_it(tmp_path):
    from hrc_fl.federated.core.registry import ModelRegistry

    # Prepare: deadline far beyond the test timeout (only the skip notice can close the round early);
    # ws2 has 4 labelled samples, below min_samples
    run = FederationRun(tmp_path, ["ws1", "ws2"], strategy={"name": "fedavg"},
                        rounds={"num_rounds": 1, "quorum": 1, "deadline_s": 3600.0, "start_wait_s": 60.0},
                        learner_options={})
    run.config["client"]["min_samples"] = 16
    run.config_path.write_text(__import__("yaml").safe_dump(run.config))
    try:
        # Execute
        run.start_client("ws1", num_samples=64)
        run.start_client("ws2", num_samples=4)
        run.start_aggregator()
        code = run.wait_exit("aggregator", 240)
    finally:
        run.stop_all()

    # Assert: the round closed with ws1 alone; ws2's skip is in the audit, not among the rejected
    assert code == 0, run.log_text("aggregator")[-3000:]
    meta = ModelRegistry(tmp_path / "state").latest().meta
    assert meta["accepted"] == ["ws1"] and meta["rejected"] == {}
    audit = [json.loads(line) for line in run.audit_path.read_text().splitlines()]
    assert ("ws2", "skipped") in {(a["client"], a["scheme"]) for a in audit}
    assert "skips round 1" in run.log_text("ws2")
