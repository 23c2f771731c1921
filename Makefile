# Two commands on a fresh machine: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PG_URL ?= postgres://postgres@127.0.0.1:5432/eats
REDIS_URL ?= redis://127.0.0.1:6379/0
ORDERS ?= 300
SEED ?= 42

.PHONY: install demo test contract lint format bench bench-quick run worker beat web lock clean

$(STAMP): requirements-dev.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	touch $(STAMP)

install: $(STAMP)

# The product on its embedded default: SQLite, the local Stripe emulator, Celery eager.
demo: $(STAMP)
	DJANGO_ENV=development CELERY_EAGER=1 DATABASE_URL=sqlite:///var/demo.sqlite3 \
		$(PY) manage.py demo --orders $(ORDERS) --seed $(SEED)

# The whole suite against real PostgreSQL and Redis.
test: $(STAMP)
	@DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) scripts/check_services.py
	DJANGO_ENV=test DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) -m pytest -q -p no:cacheprovider

# The API keeps its OpenAPI contract (issue 17): schemathesis over every operation of
# /api/schema/ (coverage, fuzzing, stateful; fixed seed, bounded examples) against the app on a
# free loopback port, a throwaway database $(CONTRACT_PG_URL) (created and dropped here) and the
# Stripe emulator, as a user holding every role. Checks: no 5xx, response bodies, status codes
# and content types as documented. Zero failures; prints the request count and the duration.
# Exclusions (CONTRACT_EXCLUDE), each with its reason:
#   - none.
CONTRACT_PG_URL ?= $(PG_URL)_contract
CONTRACT_SEED ?= 17
CONTRACT_EXAMPLES ?= 25
CONTRACT_EXCLUDE ?=
contract: $(STAMP)
	@DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) scripts/check_services.py
	DJANGO_ENV=test CELERY_EAGER=1 DATABASE_URL=$(CONTRACT_PG_URL) REDIS_URL=$(REDIS_URL) \
		$(PY) scripts/contract.py --seed $(CONTRACT_SEED) --max-examples $(CONTRACT_EXAMPLES) \
		-- $(CONTRACT_EXCLUDE)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	DJANGO_ENV=test $(PY) manage.py makemigrations --check --dry-run

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Every benchmark (or BENCH="ledger orders") in its own process, so that each one's peak
# memory is its own; one JSON line each on stdout, everything else on stderr.
BENCH_ENV = DATABASE_URL=$(PG_URL)_bench REDIS_URL=$(REDIS_URL)
bench: $(STAMP)
	@DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) scripts/check_services.py
	@$(BENCH_ENV) $(PY) manage.py db_setup
	@set -e; for name in $${BENCH:-$$($(BENCH_ENV) $(PY) manage.py bench --list)}; do \
		$(BENCH_ENV) $(PY) manage.py bench $$name $(BENCH_FLAGS); done

bench-quick:
	$(MAKE) bench BENCH_FLAGS=--quick

# For real use: gunicorn + a Celery worker + Celery beat against PostgreSQL and Redis.
run: $(STAMP)
	@DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) scripts/check_services.py
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) manage.py db_setup
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) scripts/run_all.sh

lock:
	$(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes -o requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe --extra dev -o requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) var/*.sqlite3 .pytest_cache .mypy_cache .ruff_cache
