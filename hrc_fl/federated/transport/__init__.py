"""The federation over the network: FedML cross-silo managers that translate FedML messages into round
events (fedml_adapter), the mutual-TLS gRPC transport (grpc_transport) and the certificates."""
