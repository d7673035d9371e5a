# ApptRemind developer entry points. `make up` runs the platform locally (no Docker), `make test` runs
# every check CI runs.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(HOME)/go/bin:$(CURDIR)/.venv/bin:$(PATH)
UV ?= uv
PYTEST_ARGS ?=
MYPY_PACKAGES := $(foreach p,platform auth business booking billing scheduler notification analytics edge devstack streams,-p apptremind_$(p))

.PHONY: help uv sync gen check-gen lint test unit up down status bench clean

help:
	@echo "make up      start Postgres, Kafka and every service locally; prints URLs and ports"
	@echo "make down    stop everything make up started"
	@echo "make test    lint, contract checks and the full test suite (what CI runs)"
	@echo "make gen     regenerate gen/ from proto/"
	@echo "make bench   run the benchmarks and print their tables"

uv:
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet --user uv

sync: uv
	@$(UV) sync --frozen --all-packages --quiet

gen: sync
	@rm -rf gen/apptremind_gen
	@$(UV) run --frozen buf generate
	@echo "gen/ regenerated from proto/"

# CI fails when gen/ does not match proto/.
check-gen: sync
	@tmp=$$(mktemp -d) && cp -r gen "$$tmp/gen.before" && $(MAKE) --no-print-directory gen >/dev/null \
	  && if ! diff -r -q "$$tmp/gen.before/apptremind_gen" gen/apptremind_gen >/dev/null; then \
	       diff -r -q "$$tmp/gen.before/apptremind_gen" gen/apptremind_gen; rm -rf gen && mv "$$tmp/gen.before" gen; \
	       echo "gen/ is stale: run 'make gen' and commit"; exit 1; fi; rm -rf "$$tmp"; echo "gen/ is current"

lint: sync
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check --quiet .
	@$(UV) run --frozen mypy $(MYPY_PACKAGES)
	@$(UV) run --frozen lint-imports --no-cache
	@$(UV) run --frozen buf lint
	@if command -v helm >/dev/null 2>&1; then helm lint --quiet charts/apptremind >/dev/null \
	   && helm template apptremind charts/apptremind >/dev/null && echo "helm: chart lints and renders"; \
	 else echo "helm not installed: chart not checked (go install helm.sh/helm/v3/cmd/helm@v3.16.3)"; fi
	@if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:buf.yaml 2>/dev/null; then \
	   $(UV) run --frozen buf breaking --against '.git#ref=HEAD~1' && echo "buf breaking: no breaking change against HEAD~1"; \
	 else echo "buf breaking: no previous commit with proto/ to compare against"; fi

unit: sync
	@$(UV) run --frozen pytest tests/unit -q $(PYTEST_ARGS)

test: lint check-gen
	@$(UV) run --frozen pytest -q $(PYTEST_ARGS)

up: sync
	@$(UV) run --frozen apptremind-stack up

down:
	@$(UV) run --frozen apptremind-stack down

status:
	@$(UV) run --frozen apptremind-stack status

bench: sync
	@$(UV) run --frozen --group bench python -m tests.bench.run

clean: down
	rm -rf .stack .cache
