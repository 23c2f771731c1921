import logging
from typing import Any

from django.apps import AppConfig

# Task argument names whose value is an id worth printing on every log line of the task.
_ID_ARGUMENTS = {
    "event_id": "stripe_event_id",
    "stripe_event_id": "stripe_event_id",
    "order_id": "order_id",
    "payout_id": "payout_id",
    "payout_ids": "payout_id",
    "refund_id": "refund_id",
    "run_id": "run_id",
}


def _task_context(task: Any, args: tuple | list | None, kwargs: dict | None) -> dict[str, Any]:
    values: dict[str, Any] = {"task_id": task.request.id, "task": task.name}
    named = dict(kwargs or {})
    try:  # positional arguments by the task function's parameter names
        import inspect

        params = [p for p in inspect.signature(task.run).parameters if p != "self"]
        named.update(zip(params, args or (), strict=False))
    except (TypeError, ValueError):
        pass
    for name, key in _ID_ARGUMENTS.items():
        if name in named and named[name] is not None:
            value = named[name]
            values[key] = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
    return values


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from celery import signals

        from ledger import retry
        from ops import (
            checks,  # noqa: F401  (registers the deploy checks)
            logs,
            metrics,
        )

        # Ledger write latency and retries, from every retry_on_conflict service.
        retry.observer_add(metrics.LedgerWriteObserver())

        # Task outcomes and run time, in whichever process runs the task (a prefork child of
        # a worker; the web process itself for an eager task).
        @signals.task_prerun.connect(weak=False)
        def _task_started(task_id: str = "", **_: Any) -> None:
            metrics.task_started(task_id)

        @signals.task_postrun.connect(weak=False)
        def _task_finished(
            task_id: str = "", task: Any = None, state: str | None = None, **_: Any
        ) -> None:
            if task is not None:
                metrics.task_finished(task_id, task.name, state)

        # A worker's own metrics endpoint (ops.metrics.worker_serve): the main process empties
        # the multiprocess directory before its pool forks, then serves what the children
        # write; a child that exits is marked dead (its gauges dropped, counters kept).
        @signals.worker_init.connect(weak=False)
        def _metrics_reset(**_: Any) -> None:
            metrics.multiproc_dir_reset()

        @signals.worker_ready.connect(weak=False)
        def _metrics_serve(**_: Any) -> None:
            import os

            from django.conf import settings

            bind = os.environ.get("WORKER_METRICS_BIND")
            if not bind:
                return
            try:
                metrics.worker_serve(
                    bind, settings.METRICS_TOKEN, settings.DJANGO_ENV == "production"
                )
            except OSError as exc:  # the port taken (a second worker on one host): run on
                logging.getLogger("ops.metrics").error(
                    "metrics: cannot serve the worker's metrics on %s (%s)", bind, exc
                )

        @signals.worker_process_shutdown.connect(weak=False)
        def _metrics_child_exit(pid: int | None = None, **_: Any) -> None:
            import os

            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]

        # Each Celery task's log lines carry its id and the ids in its arguments. The context
        # is restored after the task, not cleared: an eager task runs inside a web request
        # whose request id must survive it.
        tokens: dict[str, Any] = {}

        @signals.task_prerun.connect(weak=False)
        def _bind(
            task_id: str = "", task: Any = None, args: Any = None, kwargs: Any = None, **_: Any
        ) -> None:
            if task is not None:
                tokens[task_id] = logs.context_bind(**_task_context(task, args, kwargs))

        # Liveness of a worker (ops.liveness): a thread of the main process touches a file.
        @signals.worker_ready.connect(weak=False)
        def _heartbeat(**_: Any) -> None:
            import os
            import threading
            import time
            from pathlib import Path

            path = os.environ.get("CELERY_LIVENESS_FILE")
            if not path:
                return

            def beat() -> None:
                while True:
                    Path(path).touch()
                    time.sleep(15)

            threading.Thread(target=beat, name="liveness", daemon=True).start()

        @signals.task_postrun.connect(weak=False)
        def _restore(task_id: str = "", **_: Any) -> None:
            token = tokens.pop(task_id, None)
            if token is not None:
                try:
                    logs.context_reset(token)
                except ValueError:  # reset from another context: start clean instead
                    logs.context_clear()
