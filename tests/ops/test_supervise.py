"""scripts/supervise.sh (under `make run`): a process that exits is started again; SIGTERM
stops the process and the supervisor, the signal forwarded."""

import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_dead_process_is_restarted_and_sigterm_stops_everything(tmp_path):
    # given: a command that records each start, then dies at once (three times), then runs
    starts = tmp_path / "starts"
    terms = tmp_path / "terms"
    script = (
        f"echo start >> {starts}; "
        f"if [ $(wc -l < {starts}) -le 3 ]; then exit 3; fi; "
        f"trap 'echo term >> {terms}; exit 0' TERM; "
        "while true; do sleep 0.1; done"
    )
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "supervise.sh"), "demo", "bash", "-c", script],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # when: it dies three times (back-off 1 s, 2 s, 4 s)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if starts.exists() and len(starts.read_text().split()) >= 4:
                break
            time.sleep(0.1)
        # then: started a fourth time, and still running
        assert len(starts.read_text().split()) == 4
        time.sleep(0.5)
        assert proc.poll() is None

        # when: SIGTERM to the supervisor
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    # then: the child got the TERM (warm shutdown), the supervisor exited cleanly
    assert code == 0
    assert terms.read_text().split() == ["term"]
    assert proc.stderr is not None
    assert proc.stderr.read().count("demo exited with status 3") == 3
