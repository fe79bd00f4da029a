"""``hrc-fl play``: publish a recorded bag with its original timing, without rosbag2."""

from __future__ import annotations

import argparse

NAME = "play"
HELP = "Play back a bag recorded by `hrc-fl record` (or rosbag2 MCAP/sqlite3), publishing raw CDR."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="Bag folder (with metadata.yaml).")
    parser.add_argument("-r", "--rate", type=float, default=1.0, help="Playback speed factor (2: twice as fast).")
    parser.add_argument("-l", "--loop", action="store_true", help="Start over at the end until Ctrl-C.")
    parser.add_argument("--topics", nargs="+", default=[], help="Only these topics.")
    parser.add_argument("--wait-for-subscribers-s", type=float, default=0.0,
                        help="Before playing, wait up to this long for a subscriber on every topic.")
    parser.add_argument("--delay-s", type=float, default=0.0,
                        help="Then wait this long before the first message (lets late readers match).")


def run(args: argparse.Namespace) -> int:
    import threading

    import rclpy
    from rclpy.executors import ExternalShutdownException

    from hrc_fl.tools.bag import BagPlayer

    rclpy.init()
    node = rclpy.create_node("hrc_fl_play", start_parameter_services=False)
    stop = threading.Event()
    try:
        player = BagPlayer(node, args.bag, rate=args.rate, loop=args.loop, topics=args.topics,
                           log=lambda line: print(line, flush=True))
        print(f"playing {player.message_count} messages on {len(player.publishers)} topics", flush=True)
        if args.wait_for_subscribers_s > 0:
            player.wait_for_subscribers(args.wait_for_subscribers_s)
        if stop.wait(max(0.0, args.delay_s)):
            return 0
        player.play(stop)
    except (KeyboardInterrupt, ExternalShutdownException):
        stop.set()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(f"published {player.published} messages" if "player" in locals() else "nothing published")
    return 0
