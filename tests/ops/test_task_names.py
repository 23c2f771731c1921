"""Services send Celery tasks by name (`config.celery.task_send`); every name they send, and
every task the beat schedule names, is registered once Django is set up (each app imports its
`tasks` module in `AppConfig.ready()`)."""

import re
from pathlib import Path

from django.conf import settings

from config.celery import app
from stripe_gateway.services import PROCESS_TASK

ROOT = Path(__file__).resolve().parents[2]
APPS = ["ledger", "stripe_gateway", "marketplace", "payouts", "reconciliation"]


def test_every_task_sent_by_name_or_scheduled_is_registered() -> None:
    # given: the names services pass to task_send, and the beat's
    sent = {PROCESS_TASK}
    for app_dir in APPS:
        for path in (ROOT / app_dir).rglob("*.py"):
            sent |= set(re.findall(r'task_send\(\s*"([^"]+)"', path.read_text()))
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    # then
    assert len(sent) >= 4
    assert sorted((sent | scheduled) - set(app.tasks)) == []
