"""Evaluation of the federated methods on real data: the simulator, the data clients, fl-report and its
plots. Never imported by the deployed nodes."""
