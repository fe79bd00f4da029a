"""``hrc-fl topic list|echo|hz``: inspect topics on machines without the ROS 2 command line."""

from __future__ import annotations

import argparse
import sys
import time

NAME = "topic"
HELP = "List topics, print their messages, or measure their rate (like `ros2 topic`)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p_list = sub.add_parser("list", help="List topics with their types.")
    p_list.add_argument("--wait-s", type=float, default=2.0, help="Discovery time before listing (s).")
    p_list.add_argument("--include-hidden", action="store_true", help="Also list /rosout, /parameter_events.")

    p_echo = sub.add_parser("echo", help="Print messages of a topic as YAML-like text.")
    p_echo.add_argument("topic")
    p_echo.add_argument("type", nargs="?", default="", help="pkg/msg/Type (default: discovered).")
    p_echo.add_argument("-n", "--count", type=int, default=0, help="Exit after N messages (0: run on).")
    p_echo.add_argument("--max-array", type=int, default=8, help="Show at most N array items (0: all).")
    p_echo.add_argument("--timeout-s", type=float, default=0.0,
                        help="Give up after this long without the wanted messages (0: never).")

    p_hz = sub.add_parser("hz", help="Print the receive rate of a topic once a second.")
    p_hz.add_argument("topic")
    p_hz.add_argument("--window", type=int, default=100, help="Messages in the statistics window.")
    p_hz.add_argument("--duration-s", type=float, default=0.0, help="Stop after this long (0: run on).")


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init()
    node = rclpy.create_node("hrc_fl_topic", start_parameter_services=False)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if args.action == "list":
            return _list(node, executor, args)
        if args.action == "echo":
            return _echo(node, executor, args)
        return _hz(node, executor, args)
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        executor.shutdown(timeout_sec=1.0)  # releases the handles its callback generator may hold
        node.destroy_node()
        rclpy.try_shutdown()


def _spin_for(executor, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))


def _list(node, executor, args) -> int:
    _spin_for(executor, args.wait_s)
    hidden = {"/rosout", "/parameter_events"}
    for name, types in sorted(node.get_topic_names_and_types()):
        if name in hidden and not args.include_hidden:
            continue
        print(f"{name} [{', '.join(types)}]")
    return 0


def _topic_type(node, executor, topic: str, timeout_s: float) -> str | None:
    end = time.monotonic() + (timeout_s if timeout_s > 0 else float("inf"))
    while time.monotonic() < end:
        for name, types in node.get_topic_names_and_types():
            if name == topic and types:
                return types[0]
        executor.spin_once(timeout_sec=0.1)
    return None


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def _echo(node, executor, args) -> int:
    from hrc_fl.tools.msgtypes import import_message_type
    from hrc_fl.tools.topic import message_to_text, subscription_qos

    topic = _absolute(args.topic)
    start = time.monotonic()
    type_name = args.type or _topic_type(node, executor, topic, args.timeout_s)
    if not type_name:
        print(f"topic {topic} not found within {args.timeout_s} s", file=sys.stderr)
        return 1
    msg_type = import_message_type(type_name)
    # Wait briefly for publishers so the QoS can match them (latched topics need transient local).
    deadline = time.monotonic() + 2.0
    while not node.get_publishers_info_by_topic(topic) and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    received = 0

    def on_message(msg) -> None:
        nonlocal received
        if args.count and received >= args.count:
            return
        received += 1
        print(message_to_text(msg, max_array=args.max_array))
        print("---", flush=True)

    node.create_subscription(msg_type, topic, on_message,
                             subscription_qos(node.get_publishers_info_by_topic(topic)))
    while not args.count or received < args.count:
        if args.timeout_s > 0 and time.monotonic() - start > args.timeout_s:
            print(f"timed out after {args.timeout_s} s with {received} message(s)", file=sys.stderr)
            return 1
        executor.spin_once(timeout_sec=0.1)
    return 0


def _hz(node, executor, args) -> int:
    from hrc_fl.tools.topic import RateWindow, subscription_qos

    topic = _absolute(args.topic)
    start = time.monotonic()
    end = start + args.duration_s if args.duration_s > 0 else float("inf")
    type_name = _topic_type(node, executor, topic, max(0.0, end - time.monotonic()))
    if not type_name:
        print(f"topic {topic} not found", file=sys.stderr)
        return 1
    from hrc_fl.tools.msgtypes import import_message_type

    window = RateWindow(args.window)
    # raw=True: no deserialisation, so the rate reflects the topic, not this process's CPU.
    node.create_subscription(import_message_type(type_name), topic, lambda _m: window.add(time.monotonic()),
                             subscription_qos(node.get_publishers_info_by_topic(topic)), raw=True)
    next_report = time.monotonic() + 1.0
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
        if time.monotonic() >= next_report:
            next_report += 1.0
            stats = window.stats()
            print(stats.text() if stats else "no new messages", flush=True)
    return 0
