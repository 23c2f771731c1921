"""A bare Celery app for the beat singleton drill (tests/ops/test_beat_singleton.py): the
project's scheduler (ops.beat) with a half-second schedule, publishing to a queue of the
test's own; no Django."""

import os

from celery import Celery

app = Celery("beat-drill", broker=os.environ["REDIS_URL"], set_as_current=False)
app.conf.update(
    timezone="UTC",
    beat_scheduler="ops.beat:SingletonScheduler",
    beat_lock_key=os.environ["BEAT_LOCK_KEY"],
    beat_lock_ttl=float(os.environ["BEAT_LOCK_TTL"]),
    beat_schedule={
        "drill": {
            "task": "drill.tick",
            "schedule": 0.5,
            "options": {"queue": os.environ["BEAT_QUEUE"]},
        }
    },
)
