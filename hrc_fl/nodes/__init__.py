"""Thin rclpy nodes: each translates messages and calls a ROS-free core."""
