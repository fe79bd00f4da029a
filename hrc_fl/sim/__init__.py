"""ROS-free simulations that stand in for the cell's physical parts: the robot (:mod:`.robot`, a UR5e-like
cobot obeying the speed scale) and the scripted worker (:mod:`.scenario`, real detections moved along a
scripted path). Below the nodes, which play them (``robot_sim_node``, camera ``source: scenario:<file>``,
pose ``simulated_worker``); the demo (:mod:`hrc_fl.demo`) runs and judges them."""
