"""Gunicorn settings (`gunicorn config.wsgi -c python:ops.gunicorn_conf`).

Threaded workers (gthread): a slow client holds one thread, not a whole worker, so two
connections trickling a body no longer freeze the web tier; `timeout` still recycles a
worker whose threads all hang. In front of it, the ingress/proxy should buffer request
bodies (nginx does by default) so that no thread waits on a slow client at all.

Prometheus multiprocess mode: every worker writes its metrics to PROMETHEUS_MULTIPROC_DIR;
the directory is emptied when the master starts and a dead worker's gauges are dropped.
"""

import os
import shutil

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "25"))
keepalive = 5
# Headers must arrive in bounded size; bodies are bounded by Django (DATA_UPLOAD_MAX_*)
# and the webhook view (STRIPE_WEBHOOK_MAX_BODY).
limit_request_line = 8190
limit_request_fields = 100
worker_tmp_dir = os.environ.get("WEB_TMP_DIR", "/tmp")  # noqa: S108 (an emptyDir in the chart)
accesslog = "-"
# Gunicorn's access lines, each field computed only when the format reads it.
logger_class = "ops.gunicorn_logging.AccessLogger"
# Recycle a worker after this many requests (0: never; the stack benchmark measures without).
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "5000"))
max_requests_jitter = 500 if max_requests else 0


def on_starting(server) -> None:  # type: ignore[no-untyped-def]
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker) -> None:  # type: ignore[no-untyped-def]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
