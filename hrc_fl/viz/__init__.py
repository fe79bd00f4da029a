"""Visualisation helpers: marker builders, plots and reports (ROS-free)."""
