"""The one node runner: one or several nodes in one process, and a clean end on Ctrl-C / SIGTERM.

Every node executable ends here: the single-node main :func:`hrc_fl.nodes.common.run_node` is
``run_nodes`` with one node, the composed workstation (``workstation_node``) passes several.

rclpy's own signal handler shuts the context down first; a worker thread (pose, hands) that publishes a
moment later then fails with RCLError. Here the signal only ends the spin: timers are cancelled, the
closers and the nodes' ``close()`` stop their worker threads and save state while the context is still
up, then the nodes are destroyed and rclpy shut down.

Each node spins the executor its ``executor`` parameter names (:func:`executor_kind`; a node that does
not declare it gets rclpy's SingleThreadedExecutor).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

#: Seconds of DDS teardown after which a node's log gets its Python stacks (see :func:`run_nodes`).
TEARDOWN_STACK_DUMP_S = 5.0
#: Longest wait inside one executor step, s: a stop request is acted on within this (Python runs its
#: handlers between steps, not inside rcl's wait).
SPIN_WAKE_S = 0.1

#: Node parameter naming the executor the runner spins that node with (declared by the nodes that choose).
EXECUTOR_PARAMETER = "executor"
#: ``single_threaded``: rclpy's SingleThreadedExecutor (rebuilds its wait set in Python for every callback).
#: ``events``: ``rclpy.experimental.EventsExecutor`` (callbacks dispatched from C++ in arrival order, about
#: 0.3-0.6 ms less per input between processes and about 40 % less CPU in the safety node, bench/safety.py). It
#: supports no guard conditions, and an exception raised in a task made by ``executor.create_task`` crashes
#: the process (rclpy 9.1.2), so a node spun by it must use neither; callback exceptions propagate as usual.
EXECUTOR_KINDS = ("single_threaded", "events")


def executor_kind(node: Node) -> str:
    """The executor ``node`` asks for: its ``executor`` parameter, or ``single_threaded`` when undeclared.
    Raises ValueError for an unknown kind. A node whose callbacks depend on the executor (the safety
    node's heartbeat) calls this too, so the runner and the node agree."""
    if not node.has_parameter(EXECUTOR_PARAMETER):
        return "single_threaded"
    kind = node.get_parameter(EXECUTOR_PARAMETER).value
    if kind not in EXECUTOR_KINDS:
        raise ValueError(f"{EXECUTOR_PARAMETER} must be one of {EXECUTOR_KINDS}, got {kind!r}")
    return kind


def make_executor(node: Node) -> Executor:
    """A new executor of the kind :func:`executor_kind` names for ``node``, in the node's context, with the
    node added."""
    if executor_kind(node) == "events":
        from rclpy.experimental import EventsExecutor

        executor = EventsExecutor(context=node.context)
    else:
        executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    return executor


def _spin(executor: Executor, name: str, stop: threading.Event,
          failures: list[BaseException]) -> None:
    """Spin one node's executor until ``stop`` or the context ends; a callback's fault goes to ``failures``.

    A ``RuntimeError`` once the context is already shut down is the shutdown race in rclpy's executor
    (an external shutdown lands while it takes a message, and the take fails on the handle being torn
    down): it ends the node like Ctrl-C, with one log line. While the context is still up, it is a fault.
    """
    try:
        while not stop.is_set() and executor.context.ok():
            executor.spin_once(timeout_sec=SPIN_WAKE_S)
    except ExternalShutdownException:
        pass
    except RuntimeError as exc:
        if executor.context.ok():
            failures.append(exc)
        else:
            print(f"[{name}] shutdown raced with taking a message ({exc}); exiting cleanly", file=sys.stderr,
                  flush=True)
    except BaseException as exc:  # a callback's fault ends the process, as in a node of its own
        failures.append(exc)
    finally:
        stop.set()
        executor.shutdown(timeout_sec=1.0)  # its guard conditions go before the nodes are destroyed


def run_nodes(build: Callable[[list[Node]], None], args: list[str] | None = None,
              *, closers: list[Callable[[], None]] | None = None) -> None:
    """Init rclpy, let ``build`` append the process's nodes, spin them until Ctrl-C / SIGTERM or an
    external shutdown, then cancel their timers, run ``closers`` (e.g. a shared pipeline), every node's
    ``close()`` (reverse order) and tear down within :data:`hrc_fl.graph.SHUTDOWN_BOUND_S`. A closer or
    ``close()`` that raises is logged and the rest of the teardown still runs; its fault propagates after.

    Each node spins its own executor on its own thread, so a slow callback of one node (a torch
    inference in intention) never holds another's (the safety node's watchdog cycle) behind it, as with
    separate processes; they share only the GIL, which MediaPipe, torch and rcl's waits release. A fault
    raised in a callback stops the process and propagates after the clean-up (the shutdown race is not a
    fault, see :func:`_spin`). A stop request while ``build`` still constructs the nodes (model and
    FedML imports take seconds) ends the construction at once; nodes appended before ``build`` stopped
    or raised are still closed and destroyed.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    starting = [True]

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()
        if starting[0]:
            raise KeyboardInterrupt  # still constructing: nothing to save yet, end the construction now

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    nodes: list[Node] = []
    closers = closers if closers is not None else []
    failures: list[BaseException] = []
    threads: list[threading.Thread] = []
    name = "node"
    node_names: dict[int, str] = {}  # id(node) -> fully qualified name
    try:
        build(nodes)
        starting[0] = False
        # Names now: a node's handle may be gone by the time a log line needs it.
        node_names = {id(node): node.get_fully_qualified_name() for node in nodes}
        name = ", ".join(node_names.values()) or name
        for node in nodes:
            executor = make_executor(node)
            thread = threading.Thread(target=_spin, args=(executor, node.get_fully_qualified_name(), stop,
                                                          failures),
                                      name=f"spin-{node.get_name()}", daemon=True)
            threads.append(thread)
            thread.start()
        while not stop.is_set() and rclpy.ok():
            stop.wait(SPIN_WAKE_S)  # the main thread only waits for a stop request
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stopped_while_starting = starting[0]
        starting[0] = False  # from here a stop request only sets ``stop``, it never interrupts the cleanup
        stop.set()
        for sig in previous:  # a second signal while closing must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        for thread in threads:
            thread.join()
        for node in nodes:
            _cancel_timers(node)  # no callback runs during close() and teardown
        for close in closers:
            _teardown_step(close, f"{name}: closer {getattr(close, '__qualname__', repr(close))}", failures)
        for node in reversed(nodes):
            close_node = getattr(node, "close", None)
            if callable(close_node):  # worker threads joined and state saved while the context is still valid
                _teardown_step(close_node, f"{node_names.get(id(node), name)}: close()", failures)
        # Rarely (2 of some 200 node exits this session, when a whole demo stopped at once) Fast DDS deadlocks
        # tearing down readers while its peers leave; the launcher then escalates to SIGKILL. If teardown
        # stalls, leave the Python stacks in the log to show where (the process stays up; a C-level
        # watchdog, so it works even when the stalled call holds the GIL).
        faulthandler.dump_traceback_later(TEARDOWN_STACK_DUMP_S, exit=False)
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown()
        faulthandler.cancel_dump_traceback_later()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failures:
        raise failures[0]
    _exit_past_busy_workers(name, stopped_while_starting=stopped_while_starting)


def _teardown_step(step: Callable[[], None], what: str, failures: list[BaseException]) -> None:
    """Run one closer or ``close()``; a fault gets one log line and goes to ``failures`` (it propagates
    after the clean-up), so that the other nodes still save their state and the teardown still runs."""
    try:
        step()
    except Exception as exc:
        print(f"[{what}] failed during shutdown: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        failures.append(exc)


def _cancel_timers(node: Node) -> None:
    """Stop every timer of ``node`` so that no callback runs during ``close()`` and teardown."""
    for timer in list(node.timers):
        timer.cancel()


def _exit_past_busy_workers(name: str, *, stopped_while_starting: bool) -> None:
    """After a clean teardown, end the process at once if worker threads are still busy (a FedML import
    or start-up that cannot be interrupted, see :func:`hrc_fl.nodes.common.join_worker`) or the nodes
    were stopped half-built: waiting for them, or for the interpreter's finalisation under them, took
    seconds past the shutdown bound. State was saved by ``close()`` (a half-built node has none); nothing
    is lost that a normal exit would have kept."""
    busy = [t.name for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive()]
    if not busy and not stopped_while_starting:
        return
    if busy:
        print(f"[{name}] exiting with worker thread(s) still busy: {', '.join(busy)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
