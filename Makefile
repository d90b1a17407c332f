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

.PHONY: install run test chaos lint typecheck bench bench-video clean

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

run: install
	$(BIN)/python manage.py migrate --noinput
	@$(BIN)/python manage.py bootstrap --email $(DEMO_EMAIL) --password $(DEMO_PASSWORD) --team Demo --credits 500 > var/demo-login.txt
	@echo ""
	@echo "  Atelier is starting on http://127.0.0.1:$(PORT)/"
	@echo "  Log in as $(DEMO_EMAIL) / $(DEMO_PASSWORD)   (admin: http://127.0.0.1:$(PORT)/admin/)"
	@echo "  API key for the Demo team: $$(tail -n 1 var/demo-login.txt)"
	@echo "  API docs: http://127.0.0.1:$(PORT)/api/docs/"
	@echo ""
	@# Metrics of the previous run's processes (prometheus_client's multiprocess files) go before any starts.
	@find "$${PROMETHEUS_MULTIPROC_DIR:-$${ATELIER_VAR_DIR:-var}/prometheus}" -maxdepth 1 -name '*.db' -delete 2>/dev/null || true
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port $(PORT) web worker quarantine rescuer beat

test: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} TEST_REDIS_URL=$${TEST_REDIS_URL:-$(TEST_REDIS_URL)} \
		$(BIN)/python -m pytest --ignore=tests/chaos $(PYTEST_ARGS)

# The chaos suite: faults injected into the real stack (about 7 minutes); prints its figures.
chaos: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
		$(BIN)/python -m pytest tests/chaos -p no:cacheprovider -s -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy accounts credits generation config

# The benchmarks of issue 10 against the real stack (about 4 minutes; BENCH_QUICK=1 for a short
# smoke run); each figure is printed with the settings behind it (lines starting with `[bench]`).
# A PostgreSQL of the bench's own is started unless BENCH_DATABASE_URL names a server to use.
bench: install
	BENCH_REDIS_URL=$${BENCH_REDIS_URL:-redis://127.0.0.1:6379/14} $(BIN)/python -m bench.run

# Encode time and peak memory of the local provider's clips.
bench-video: install
	$(BIN)/python bench/local_video.py

clean:
	rm -rf $(VENV) var
