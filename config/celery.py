"""The Celery application, wired to Django settings (keys prefixed ``CELERY_``)."""

import os
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("eats")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def task_send(name: str, /, *args: Any, **options: Any) -> None:
    """Send the registered task `name` with positional `args` and `apply_async` options
    (queue, countdown, retry_policy...); eager mode runs it inline as usual.

    Services schedule their follow-up work through this, by task name, so that each app's
    `tasks.py` imports its services and never the reverse (the import contracts forbid the
    cycle). Every app imports its `tasks` module in `AppConfig.ready()`, so the name is
    registered in web, worker and beat processes alike; an unknown name is a KeyError.
    """
    app.tasks[name].apply_async(args, **options)
