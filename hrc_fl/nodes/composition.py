"""Several nodes in one process (rclpy executor), and a clean end on Ctrl-C / SIGTERM.

rclpy's own signal handler shuts the context down first; a worker thread (pose, hands) that publishes a
moment later then fails with RCLError. Here the signal only ends the spin: the nodes' ``close()`` stops
their worker threads while the context is still up, then the nodes are destroyed and rclpy shut down.
"""

from __future__ import annotations

import faulthandler
import signal
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

#: Longest wait inside one executor step, s: a signal is acted on within this (Python runs its
#: handlers between steps, not inside rcl's wait).
SPIN_WAKE_S = 0.1
#: Seconds of DDS teardown after which the log gets the Python stacks (as hrc_fl.nodes.common.run_node).
TEARDOWN_STACK_DUMP_S = 5.0


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def _spin(executor: SingleThreadedExecutor, stop: threading.Event, failures: list[BaseException]) -> None:
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=SPIN_WAKE_S)
    except ExternalShutdownException:
        pass
    except BaseException as exc:  # a callback's fault ends the process, as in a node of its own
        failures.append(exc)
    finally:
        stop.set()
        executor.shutdown(timeout_sec=1.0)  # its guard conditions go before the nodes are destroyed


def run_nodes(build: Callable[[list[Node]], None], args: list[str] | None = None,
              *, closers: list[Callable[[], None]] | None = None) -> None:
    """Init rclpy, let ``build`` append the process's nodes, spin them until Ctrl-C / SIGTERM, then
    run ``closers`` (e.g. a shared pipeline), every node's ``close()`` (reverse order) and tear down.

    Each node spins its own executor on its own thread, so a slow callback of one node (a torch
    inference in intention) never holds another's (the safety node's watchdog cycle) behind it, as with
    separate processes; they share only the GIL, which MediaPipe, torch and rcl's waits release. A fault
    raised in a callback stops the process and propagates after the clean-up. Nodes appended before
    ``build`` raised are still closed and destroyed.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    nodes: list[Node] = []
    closers = closers if closers is not None else []
    stop = threading.Event()
    failures: list[BaseException] = []
    threads: list[threading.Thread] = []
    try:
        build(nodes)
        for node in nodes:
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            thread = threading.Thread(target=_spin, args=(executor, stop, failures),
                                      name=f"spin-{node.get_name()}", daemon=True)
            threads.append(thread)
            thread.start()
        while not stop.is_set() and rclpy.ok():
            stop.wait(SPIN_WAKE_S)  # the main thread only waits for a signal (KeyboardInterrupt here)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for sig in previous:  # a second signal while closing must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        for thread in threads:
            thread.join()
        for close in closers:
            close()
        for node in reversed(nodes):
            close_node = getattr(node, "close", None)
            if callable(close_node):
                close_node()
        faulthandler.dump_traceback_later(TEARDOWN_STACK_DUMP_S, exit=False)
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown()
        faulthandler.cancel_dump_traceback_later()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failures:
        raise failures[0]
