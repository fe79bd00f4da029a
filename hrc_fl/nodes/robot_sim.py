"""robot_sim_node: a simulated UR5e-like cobot for the demo and tests.

Follows the configured joint-space loop, scaled by ``robot/speed_scale`` (std_msgs/Float64, 0..1);
no scale yet, a scale older than ``scale_timeout_s`` or a non-finite scale stops it (fail safe).
Publishes ``robot/joint_states`` (sensor_msgs/JointState) and ``robot/tcp_pose``
(geometry_msgs/PoseStamped in ``base_frame``).
"""

from __future__ import annotations

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from hrc_fl.nodes.common import SAFETY_QOS, Diagnostics, declare_parameters, run_node
from hrc_fl.sim.robot import UR5E_JOINT_NAMES, RobotSim, RobotSimConfig

PARAMETERS = {
    "joint_names": (list(UR5E_JOINT_NAMES), "Joint names in JointState order (6)."),
    "waypoints_rad": ([0.0, -1.2, 1.4, -1.77, -1.57, 0.0, 0.8, -1.0, 1.2, -1.77, -1.57, 0.0],
                      "Joint-space path, flat list of 6 angles (rad) per waypoint; traversed in a loop."),
    "joint_speed_rad_s": (1.0, "Speed of the fastest-moving joint at speed scale 1 (rad/s)."),
    "scale_timeout_s": (0.5, "A speed scale older than this is stale and stops the robot (s)."),
    "stop_time_s": (0.3, "Ramp time of the applied scale from 1 to 0 and back (s)."),
    "publish_rate_hz": (50.0, "Control and publish rate (Hz)."),
    "base_frame": ("base_link", "Frame of robot/tcp_pose (the robot base = workstation frame)."),
}


class RobotSimNode(Node):
    """Steps :class:`RobotSim` on a timer and translates its state to ROS messages."""

    def __init__(self) -> None:
        super().__init__("robot_sim")
        p = declare_parameters(self, PARAMETERS)
        if len(p["joint_names"]) != 6:
            raise ValueError(f"joint_names must name 6 joints, got {p['joint_names']}")
        if not p["publish_rate_hz"] > 0:
            raise ValueError("publish_rate_hz must be positive")
        self._sim = RobotSim(RobotSimConfig.from_flat(
            list(p["waypoints_rad"]), joint_speed_rad_s=p["joint_speed_rad_s"],
            scale_timeout_s=p["scale_timeout_s"], stop_time_s=p["stop_time_s"]))
        self._joint_names = list(p["joint_names"])
        self._frame = p["base_frame"]
        self._joint_pub = self.create_publisher(JointState, "robot/joint_states", SAFETY_QOS)
        self._pose_pub = self.create_publisher(PoseStamped, "robot/tcp_pose", SAFETY_QOS)
        self.create_subscription(Float64, "robot/speed_scale", self._on_scale, SAFETY_QOS)
        self._diag = Diagnostics(self, "robot sim")
        self._was_stale = True
        self.create_timer(1.0 / p["publish_rate_hz"], self._on_timer)

    def _now(self) -> tuple[Time, float]:
        """The node's clock now, as the stamp to publish and as the simulation's time (s). One reading
        for both: a state computed at one instant and stamped at another (the thread preempted between
        the two on a loaded machine) made the safety node's finite-difference robot speed jump to 4-12
        m/s in the demo (1 m/s real), and S_p with it."""
        now = self.get_clock().now()
        return now.to_msg(), now.nanoseconds * 1e-9

    def _on_scale(self, msg: Float64) -> None:
        if not self._sim.set_scale(msg.data, self._now()[1]):
            self._diag.problem("bad_scale", f"non-finite speed scale {msg.data}; ignored (robot stops "
                               "when the last good one goes stale)")

    def _on_timer(self) -> None:
        stamp, now_s = self._now()
        state = self._sim.step(now_s)
        if state.scale_stale and not self._was_stale:
            self._diag.problem("stale_scale", "speed scale missing or stale: stopping (fail safe)")
        self._was_stale = state.scale_stale
        joints = JointState(name=self._joint_names, position=state.joints_rad.tolist(),
                            velocity=state.joint_velocities_rad_s.tolist())
        joints.header.stamp = stamp
        self._joint_pub.publish(joints)
        pose = PoseStamped()
        pose.header.stamp = stamp
        pose.header.frame_id = self._frame
        x, y, z = state.tcp_position_m.tolist()
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = x, y, z
        qx, qy, qz, qw = state.tcp_orientation_xyzw.tolist()
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = qx, qy, qz, qw
        self._pose_pub.publish(pose)
        self._diag.set_value("applied_scale", f"{state.applied_scale:.3f}")
        self._diag.set_value("tcp_speed_mps", f"{state.tcp_speed_mps:.3f}")
        self._diag.set_value("scale_stale", state.scale_stale)


def main(args: list[str] | None = None) -> None:
    run_node(RobotSimNode, args)
