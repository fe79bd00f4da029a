"""The plant demo: scenario driver, run orchestration and its report (what it plays: :mod:`hrc_fl.sim`)."""
