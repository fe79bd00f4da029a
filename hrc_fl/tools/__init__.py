"""Command-line tools for machines without the ROS 2 CLI: topic list/echo/hz, bag record/play."""
