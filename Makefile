# Two commands: `make run` (embedded defaults, no servers) and `make test` (PostgreSQL + Redis).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
DEMO_EMAIL ?= demo@atelier.local
DEMO_PASSWORD ?= atelier-demo-1

# Tests run against the machine's PostgreSQL and Redis unless told otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/atelier
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test chaos lint typecheck bench bench-video bench-sse clean

# The project runs from this folder and is not installed itself: only its dependencies (and the
# dev extra) from pyproject.toml, pinned by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' > $(VENV)/requirements.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -r $(VENV)/requirements.txt
	touch $(STAMP)

install: $(STAMP)

# `make run` listens on this machine only; `make run HOST=0.0.0.0` to be reached from others.
# (Set here, not taken from the environment, where HOST often names the machine.)
HOST = 127.0.0.1
OPERATOR_EMAIL ?= operator@atelier.local
OPERATOR_PASSWORD ?= atelier-operator-1

# The demo's login, team, credits, API key and operator are made on the first run only: later
# runs keep them (browsers stay logged in). The key's one plaintext copy is var/demo-login.txt.
run: install
	$(BIN)/python manage.py migrate --noinput
	@mkdir -p var
	@$(BIN)/python manage.py bootstrap --email $(DEMO_EMAIL) --password $(DEMO_PASSWORD) --team Demo --credits 500 \
		--key-file var/demo-login.txt --operator-email $(OPERATOR_EMAIL) --operator-password $(OPERATOR_PASSWORD) \
		> var/bootstrap.log || { cat var/bootstrap.log; exit 1; }
	@echo ""
	@echo "  Atelier is starting on http://$(if $(filter 0.0.0.0,$(HOST)),127.0.0.1,$(HOST)):$(PORT)/   (listening on $(HOST))"
	@echo "  Log in as $(DEMO_EMAIL) / $(DEMO_PASSWORD)"
	@echo "  API key for the Demo team: $$(tail -n 1 var/demo-login.txt 2>/dev/null || echo 'made on the first run; var/demo-login.txt is gone, make one on /account/keys/')"
	@echo "  Operator: $(OPERATOR_EMAIL) / $(OPERATOR_PASSWORD)   admin: http://$(if $(filter 0.0.0.0,$(HOST)),127.0.0.1,$(HOST)):$(PORT)/admin/"
	@echo "  API docs: http://$(if $(filter 0.0.0.0,$(HOST)),127.0.0.1,$(HOST)):$(PORT)/api/docs/"
	@echo ""
	@# Metrics of the previous run's processes (prometheus_client's multiprocess files) go before any starts.
	@find "$${PROMETHEUS_MULTIPROC_DIR:-$${ATELIER_VAR_DIR:-var}/prometheus}" -maxdepth 1 -name '*.db' -delete 2>/dev/null || true
	@# Webhooks may reach this machine's own receivers while make run listens on it alone.
	PATH="$(CURDIR)/$(BIN):$$PATH" WEB_HOST=$(HOST) \
		$(if $(filter 127.0.0.1 localhost,$(HOST)),WEBHOOK_ALLOW_PRIVATE_ADDRESSES=$${WEBHOOK_ALLOW_PRIVATE_ADDRESSES:-true}) \
		$(BIN)/honcho start --port $(PORT) web worker quarantine rescuer webhooks beat

# Two pytest processes (pytest-xdist): one runs every test that starts processes (Celery, gunicorn,
# Chromium), one after another; the other runs the rest. Each has its own test database and Redis
# database. `make test TEST_PROCESSES=0` runs everything in one process.
TEST_PROCESSES ?= 2

test: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} TEST_REDIS_URL=$${TEST_REDIS_URL:-$(TEST_REDIS_URL)} \
		$(BIN)/python -m pytest --ignore=tests/chaos \
		$(if $(filter-out 0 1,$(TEST_PROCESSES)),-n $(TEST_PROCESSES) --dist loadgroup) $(PYTEST_ARGS)

# The chaos suite: faults injected into the real stack (about 7 minutes); prints its figures.
chaos: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
		$(BIN)/python -m pytest tests/chaos -p no:cacheprovider -s -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy accounts credits generation config webhooks

# The benchmarks of issue 10 against the real stack (about 4 minutes; BENCH_QUICK=1 for a short
# smoke run); each figure is printed with the settings behind it (lines starting with `[bench]`).
# A PostgreSQL of the bench's own is started unless BENCH_DATABASE_URL names a server to use.
bench: install
	BENCH_REDIS_URL=$${BENCH_REDIS_URL:-redis://127.0.0.1:6379/14} $(BIN)/python -m bench.run

# Encode time and peak memory of the local provider's clips.
bench-video: install
	$(BIN)/python bench/local_video.py

# The web process under 300 open event streams while jobs run (memory, threads, delivery), and
# ordinary requests on it against gthread gunicorn's (bench/sse_streams.py; about 3 minutes).
bench-sse: install
	BENCH_REDIS_URL=$${BENCH_REDIS_URL:-redis://127.0.0.1:6379/14} $(BIN)/python -m bench.sse_streams

clean:
	rm -rf $(VENV) var
