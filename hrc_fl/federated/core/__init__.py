"""The engine-free federated core: strategies and aggregation, privacy, compression, the shared/personal
split and local training, the round state, secure aggregation, configuration and the learners.

No FedML, gRPC or evaluation import here (tests/test_import_layers.py)."""
