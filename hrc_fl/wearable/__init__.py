"""Wearable IMU sources (serial, UDP, replay), validation and clock mapping, without ROS."""
