"""Perception: camera sources, MediaPipe hand and pose wrappers, filters, trackers (ROS-free)."""
