"""Operations: probes, metrics (web and worker), logs, database roles, the singleton beat
scheduler and the benchmark runner. Imports no business app at import time (ops.apps
registers its metrics observer on ledger.retry when Django is ready)."""
