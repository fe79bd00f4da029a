"""``hrc-fl record``: record topics into an MCAP bag (rosbag2 layout) without rosbag2."""

from __future__ import annotations

import argparse
import time

NAME = "record"
HELP = "Record topics (default: all) into an MCAP bag folder, like `ros2 bag record -s mcap`."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topics", nargs="*", help="Topics to record (absolute names); none: all topics.")
    parser.add_argument("-o", "--output", default="", help="Bag folder to create "
                        "(default: <runtime>/bags/hrc_fl_<date>_<time>).")
    parser.add_argument("--duration-s", type=float, default=0.0, help="Stop after this long (0: until Ctrl-C).")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from hrc_fl.paths import runtime_dir
    from hrc_fl.tools.bag import BagRecorder

    out = Path(args.output) if args.output else runtime_dir() / "bags" / time.strftime("hrc_fl_%Y%m%d_%H%M%S")
    out.parent.mkdir(parents=True, exist_ok=True)
    rclpy.init()
    node = rclpy.create_node("hrc_fl_record", start_parameter_services=False)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    recorder = BagRecorder(node, out, args.topics, log=lambda line: print(line, flush=True))
    end = time.monotonic() + args.duration_s if args.duration_s > 0 else float("inf")
    try:
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # the executor's callback generator can hold entity handles between spin_once calls (QoS-event
        # waitables); shutting it down releases them, else destroying a subscription blocks forever
        executor.shutdown(timeout_sec=1.0)
        stats = recorder.close()
        node.destroy_node()
        rclpy.try_shutdown()
    for topic, count in sorted(stats.messages.items()):
        print(f"{topic}: {count} messages, {stats.bytes[topic]} bytes")
    print(out)
    return 0
