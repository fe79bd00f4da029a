"""The plant demo: simulated robot, scenario driver, run orchestration and its report."""
