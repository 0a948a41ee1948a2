# The two commands that matter: `make demo` (whole stack + sample job) and `make test` (everything CI runs).
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: bootstrap lock wheels demo up clean test lint typecheck check-stubs check-readme readme codegen pytest bench fmt deploy-config dev-secrets

bootstrap:
	@./scripts/bootstrap.sh

# Refresh uv.lock to the newest releases that pyproject.toml's bounds allow; then run `make test`.
# Nothing else ever changes the lock: bootstrap, the image and CI install it with `uv sync --frozen`.
lock: bootstrap
	$(BIN)/uv lock --upgrade

# The three wheels (rentscout-core, rentscout-client, rentscout-server) into dist/, offline from the uv cache.
wheels: bootstrap
	$(BIN)/uv build --all-packages --wheel --offline -o dist

# STACK_ARGS: more `rentscout stack` flags, e.g. STACK_ARGS="--port-offset 100 --dir /tmp/s".
# A failing recipe makes make itself exit 2 (printing `Error <code>`): the README says so.
demo: bootstrap
	$(BIN)/rentscout stack demo $(STACK_ARGS)

up: bootstrap
	$(BIN)/rentscout stack up $(STACK_ARGS)

# Delete the local stack's state (.stack: private PostgreSQL and Redis data, tokens, logs); refuses while it runs.
clean:
	@if [ -x $(BIN)/rentscout ]; then $(BIN)/rentscout stack clean --dir .stack; else rm -rf .stack; fi

codegen: bootstrap
	$(PY) scripts/codegen.py

check-stubs: bootstrap
	$(PY) scripts/codegen.py --check

readme: bootstrap
	$(PY) scripts/readme_config.py

check-readme: bootstrap
	$(PY) scripts/readme_config.py --check

lint: bootstrap
	$(BIN)/ruff format --check core services clients tests bench scripts
	$(BIN)/ruff check core services clients tests bench scripts
	$(BIN)/buf lint

# mypy over core/, services/ and clients/ as one namespace (configured in pyproject.toml [tool.mypy])
typecheck: bootstrap
	$(BIN)/mypy

pytest: bootstrap
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck check-stubs check-readme pytest

bench: bootstrap
	$(PY) bench/run_all.py

# Format (ruff format, checked by `make lint`), then the lint fixes ruff can make itself.
fmt: bootstrap
	$(BIN)/ruff format core services clients tests bench scripts
	$(BIN)/ruff check --fix core services clients tests bench scripts

# Deployment config (.env.example, k8s ConfigMap env, Secret template) from the settings declarations.
deploy-config: bootstrap
	$(PY) scripts/gen_deploy_config.py

dev-secrets: bootstrap
	$(PY) scripts/dev_secrets.py
