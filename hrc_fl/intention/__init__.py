"""Multimodal intention model (shared encoders + personal head), alignment, features, model store."""
