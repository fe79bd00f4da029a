"""The shared node main (`run_node`): how a node process ends on Ctrl-C and on a real fault."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A node process whose timer callback reproduces rclpy's shutdown race: the context is shut down (what
# rclpy's SIGINT handler does) and, in the same executor step, taking a message fails with the
# RuntimeError seen from `take_message` under load. With `--context-up` the same error happens while the
# context is still up, i.e. a real fault.
_NODE_SCRIPT = textwrap.dedent('''
    import sys
    from rclpy.node import Node
    from hrc_fl.nodes.common import run_node

    class Racy(Node):
        def __init__(self):
            super().__init__("racy")
            self.closed = False
            self.create_timer(0.05, self._tick)

        def _tick(self):
            if "--context-up" not in sys.argv:
                self.context.try_shutdown()
            raise RuntimeError("Unable to convert call argument '0' to Python object")

        def close(self):
            print("CLOSED", flush=True)

    run_node(Racy)
''')


def _run(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _NODE_SCRIPT, *extra], capture_output=True, text=True,
                          timeout=60)


def test_shutdown_race_while_taking_a_message_ends_the_node_cleanly():
    # Execute
    proc = _run()

    # Assert: exit 0, one clear line instead of a traceback, the node's close() still ran
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "raced with taking a message" in line]
    assert len(lines) == 1 and lines[0].startswith("[/racy]"), proc.stderr
    assert "CLOSED" in proc.stdout


def test_the_same_error_while_the_context_is_up_is_not_hidden():
    # Execute
    proc = _run("--context-up")

    # Assert: the fault propagates (non-zero exit, traceback), and close() still ran on the way out
    assert proc.returncode != 0
    assert "RuntimeError: Unable to convert call argument" in proc.stderr
    assert "raced with taking a message" not in proc.stderr
    assert "CLOSED" in proc.stdout


_STALLING_TEARDOWN = textwrap.dedent('''
    import time
    from rclpy.node import Node
    from hrc_fl.nodes import common

    class Stalling(Node):
        def __init__(self):
            super().__init__("stalling")
            self.create_timer(0.05, self.context.try_shutdown)  # Ctrl-C, as rclpy's SIGINT handler does

        def destroy_node(self):
            time.sleep(common.TEARDOWN_STACK_DUMP_S + 2.0)  # a DDS teardown that hangs for a while
            super().destroy_node()

    common.run_node(Stalling)
''')


def test_a_stalled_teardown_leaves_the_stacks_in_the_node_log():
    # Execute
    proc = subprocess.run([sys.executable, "-c", _STALLING_TEARDOWN], capture_output=True, text=True, timeout=60)

    # Assert: the node still ends with 0 once teardown finishes, and its log shows where teardown stalled
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Timeout (0:00:05)!" in proc.stderr
    assert "in destroy_node" in proc.stderr and "in run_node" in proc.stderr


_SLOW_START = textwrap.dedent('''
    import time
    from rclpy.node import Node
    from hrc_fl.nodes import common

    class SlowStart(Node):
        def __init__(self):
            super().__init__("slow_start")
            print("CONSTRUCTING", flush=True)
            time.sleep(60.0)  # a model / FedML import that takes long on a loaded machine
            print("CONSTRUCTED", flush=True)

    common.run_node(SlowStart)
''')


def test_sigint_while_the_node_is_still_starting_ends_it_at_once():
    # Prepare
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-c", _SLOW_START], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "CONSTRUCTING"

    # Execute
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    # Assert: exit 0 well before the construction would have finished, no traceback
    from hrc_fl.graph import SHUTDOWN_BOUND_S

    assert proc.returncode == 0, err[-2000:]
    assert time.monotonic() - t0 < SHUTDOWN_BOUND_S
    assert "CONSTRUCTED" not in out and "Traceback" not in err


def test_sigint_while_a_node_executable_loads_its_libraries_ends_it_quietly():
    # Prepare: a real node executable (the intention node imports torch at load: seconds)
    import signal
    import time
    from pathlib import Path

    exe = Path(sys.executable).parent / "intention_node"
    proc = subprocess.Popen([str(exe), "--ros-args", "-r", "__node:=loading_probe"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)

    # Execute: what ros2 launch or a terminal's Ctrl-C sends while the node is still loading
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)

    # Assert
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
