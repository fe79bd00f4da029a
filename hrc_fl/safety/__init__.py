"""ISO/TS 15066 speed and separation monitoring (ROS-free): protective separation distance, robot and
human geometry, zone state machine, input watchdog and the composed :class:`SafetyMonitor`."""
