"""Command-line tools for machines without the ROS 2 CLI: topic list/echo/hz, bag record/play, and the
topic rates of a running graph (rclpy helpers of the demo and ``hrc-fl launch``)."""
