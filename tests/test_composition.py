"""The composed-process runner (`run_nodes`): Ctrl-C with worker threads publishing, and real faults, with
each executor a node can ask for (its ``executor`` parameter)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hrc_fl.nodes.composition import EXECUTOR_KINDS

# Two nodes in one process; one has a worker thread that publishes as fast as it can until close() -
# as the pose and hands workers do. With rclpy's own SIGINT handler the context went first and the
# worker's next publish raised RCLError.
_SCRIPT = textwrap.dedent('''
    import sys, threading
    from rclpy.node import Node
    from std_msgs.msg import String
    from hrc_fl.nodes.composition import run_nodes

    class Busy(Node):
        def __init__(self, name):
            super().__init__(name)
            if "--executor" in sys.argv:
                self.declare_parameter("executor", sys.argv[sys.argv.index("--executor") + 1])
            self.pub = self.create_publisher(String, "chatter", 10)
            self.stop = threading.Event()
            self.sent = 0
            self.worker = threading.Thread(target=self._loop)
            self.worker.start()
            if "--fail" in sys.argv:
                self.create_timer(0.2, self._fail)
            if name == "one":  # one line from one thread (two would interleave on the pipe)
                self.create_timer(0.2, lambda: print("READY", flush=True))

        def _loop(self):
            while not self.stop.is_set():
                self.pub.publish(String(data="x"))
                self.sent += 1

        def _fail(self):
            raise RuntimeError("a real fault in a callback")

        def close(self):
            self.stop.set()
            self.worker.join()
            print(f"CLOSED {self.get_name()} {self.sent > 0}", flush=True)
            if "--close-fails" in sys.argv and self.get_name() == "two":
                raise RuntimeError("close() of two failed")

    def failing_closer():
        raise RuntimeError("a closer failed")

    run_nodes(lambda nodes: nodes.extend([Busy("one"), Busy("two")]),
              closers=[failing_closer] if "--close-fails" in sys.argv else None)
''')


def _stopped_by_sigint(*extra: str) -> tuple[subprocess.Popen, str, str]:
    """Run the script, SIGINT it once both nodes publish; the process and its output."""
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, out, err


@pytest.mark.parametrize("executor", EXECUTOR_KINDS)
def test_sigint_stops_the_workers_before_the_context_and_exits_0(executor):
    # Execute
    proc, out, err = _stopped_by_sigint("--executor", executor)

    # Assert: both nodes closed (in reverse order), their workers had published, a clean exit
    assert proc.returncode == 0, err[-2000:]
    assert [line for line in out.splitlines() if line.startswith("CLOSED")] == ["CLOSED two True",
                                                                                 "CLOSED one True"]
    assert "RCLError" not in err and "Traceback" not in err, err[-2000:]


@pytest.mark.parametrize("executor", EXECUTOR_KINDS)
def test_a_fault_in_a_callback_ends_the_process_with_it_after_closing_the_nodes(executor):
    # Execute
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, "--fail", "--executor", executor], capture_output=True,
                          text=True, timeout=60)

    # Assert
    assert proc.returncode != 0
    assert "RuntimeError: a real fault in a callback" in proc.stderr
    assert "CLOSED two True" in proc.stdout and "CLOSED one True" in proc.stdout


def test_a_failing_closer_or_close_does_not_skip_the_rest_of_the_teardown():
    # Execute: the shared closer and node two's close() raise
    proc, out, err = _stopped_by_sigint("--close-fails")

    # Assert: node one still closed after both faults, one line each, and the first fault propagates
    assert [line for line in out.splitlines() if line.startswith("CLOSED")] == ["CLOSED two True",
                                                                                 "CLOSED one True"]
    failed = [line for line in err.splitlines() if "failed during shutdown" in line]
    assert len(failed) == 2, err[-2000:]
    assert "a closer failed" in failed[0] and failed[1].startswith("[/two: close()]")
    assert proc.returncode != 0
    assert "RuntimeError: a closer failed" in err.split("failed during shutdown")[-1]


def test_an_unknown_executor_ends_the_process_before_spinning_and_still_closes_the_nodes():
    # Execute
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, "--executor", "multi_threaded"], capture_output=True,
                          text=True, timeout=60)

    # Assert: the parameter's error, the nodes closed, no node spun (READY comes from a timer)
    assert proc.returncode != 0
    assert "executor must be one of" in proc.stderr
    assert "CLOSED two True" in proc.stdout and "CLOSED one True" in proc.stdout
    assert "READY" not in proc.stdout
