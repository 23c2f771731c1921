"""`python -m ops.liveness PATH MAX_AGE`: exit 0 when a file named PATH (or PATH.*: dbm
backends add suffixes) changed less than MAX_AGE seconds ago, else 1.

The worker touches its file from a thread of its main process (see ops.apps), the beat
rewrites its schedule; neither needs the broker, so a Redis outage does not fail the probe
(the worker reconnects by itself) while a hung or wedged process does. Imports nothing from
Django: the probe must stay cheap.
"""

import glob
import os
import sys
import time


def newest_age(path: str) -> float | None:
    mtimes = [
        os.path.getmtime(p)
        for p in [path, *glob.glob(glob.escape(path) + ".*")]
        if os.path.exists(p)
    ]
    return time.time() - max(mtimes) if mtimes else None


def main(argv: list[str]) -> int:
    path, max_age = argv[1], float(argv[2])
    age = newest_age(path)
    if age is None:
        print(f"{path}: missing")
        return 1
    if age > max_age:
        print(f"{path}: last touched {age:.0f}s ago (limit {max_age:.0f}s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
