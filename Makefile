# certfed build, lint and test entry points.
#
# Every target sets up what it needs on its own, from a clean clone, with only Python >= 3.11,
# node/npm and access to PyPI and npm: `make test` and `make demo` are enough.
#
#   make test      venv + buf + generated code, then lint, then pytest over tests/ (drift included)
#   make system-libs   Debian's libsodium23 if missing (the locator OPRF needs it)
#   make deploy-tools  Debian's systemd and prometheus (for systemd-analyze, promtool) if missing
#   make browser-tools Debian's chromium + CJK fonts if missing, axe-core from npm (browser tests)
#   make demo      venv, then `.venv/bin/certfed demo $(DEMO_ARGS)`
#   make lint      ruff check, ruff format --check, mypy (strict), buf lint
#   make drift     only the generated-code drift check
#   make proto     regenerate proto/certfed/v1/*_pb2*.py[i] (commit the result)
#   make fmt       ruff format + ruff check --fix
#   make constraints  re-resolve `.[dev]` in a throwaway venv and rewrite constraints.txt
#   make clean     remove .venv, .tools and caches

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

# Interpreter used to create .venv: python3.11, else python3 (checked to be >= 3.11).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3)
PIP_VERSION := 26.3
BUF_VERSION := 1.75.0
AXE_VERSION := 4.14.1

VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Re-install only when the dependency declarations change.
INSTALL_STAMP := $(VENV)/.install-stamp

TOOLS := .tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_STAMP := $(TOOLS)/.buf-$(BUF_VERSION)
AXE_STAMP := $(TOOLS)/.axe-core-$(AXE_VERSION)

PROTO_DIR := proto
PROTOS := $(sort $(wildcard $(PROTO_DIR)/certfed/v1/*.proto))
GENERATED := $(foreach p,$(PROTOS:.proto=),$(p)_pb2.py $(p)_pb2.pyi $(p)_pb2_grpc.py $(p)_pb2_grpc.pyi)

# Test workers (pytest-xdist; 0 runs in this process). `--dist loadfile` keeps a module's shared
# federation on one worker. Each worker draws local ports from its own block (cli/launcher.py),
# so two workers never race for one; they halve the suite's time.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?= -q -ra --durations=30 -n $(PYTEST_WORKERS) --dist loadfile
DEMO_ARGS ?=

# Nothing may prompt or nag: CI runs without stdin.
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1
export npm_config_update_notifier := false
export npm_config_fund := false
export npm_config_audit := false
# protoc plugins (protoc-gen-mypy, protoc-gen-mypy_grpc) and buf are looked up on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

# libsodium (Debian libsodium23): the locator OPRF's ristretto255 arithmetic, through pysodium.
# Installed only when missing and only as root (as CI runs); otherwise the setup stops and says so.
system-libs:
	@if ! $(PYTHON) -c 'import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library("sodium") else 1)'; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> installing Debian package: libsodium23"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq; \
	    apt-get install -y -qq --no-install-recommends libsodium23 >/dev/null; \
	  else \
	    echo "certfed needs libsodium: install the Debian package libsodium23 as root" >&2; exit 1; \
	  fi; \
	fi

.PHONY: help setup system-libs venv buf gen proto lint drift test demo fmt constraints clean deploy-tools \
	browser-tools axe

help:
	@sed -n '3,17p' Makefile | sed 's/^# \{0,1\}//'

setup: system-libs venv buf gen

venv: $(INSTALL_STAMP)

$(PY):
	@echo "==> creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else "certfed needs Python >= 3.11, $(PYTHON) is %d.%d" % v[:2])'
	@$(PYTHON) -m venv $(VENV)

$(INSTALL_STAMP): pyproject.toml constraints.txt | $(PY)
	@echo "==> installing certfed[dev] into $(VENV) (pinned by constraints.txt)"
	@$(PY) -m pip install -q --upgrade 'pip==$(PIP_VERSION)'
	@$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

buf: $(BUF_STAMP)

$(BUF_STAMP):
	@echo "==> installing buf $(BUF_VERSION) into $(TOOLS)"
	@mkdir -p $(TOOLS)
	@npm install --prefix $(TOOLS) --save-exact --silent --no-progress '@bufbuild/buf@$(BUF_VERSION)' </dev/null
	@$(BUF) --version >/dev/null
	@rm -f $(TOOLS)/.buf-* && touch $@

# The one protoc command; $(1) is the output directory. The `quiet:` plugin option only
# silences mypy-protobuf's "Writing mypy to ..." lines, it does not change the output.
protoc = $(PY) -m grpc_tools.protoc -I$(PROTO_DIR) \
	  --python_out=$(1) --mypy_out=quiet:$(1) \
	  --grpc_python_out=$(1) --mypy_grpc_out=quiet:$(1) \
	  $(PROTOS)

# Generated code is committed; a checkout that lacks some gets only those files, so that a
# stale committed file is never overwritten here and still fails the drift check.
gen: venv
	@missing=; for f in $(GENERATED); do [ -f "$$f" ] || missing="$$missing $$f"; done; \
	if [ -n "$$missing" ]; then \
	  echo "==> generating missing protobuf code:$$missing"; \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(call protoc,$$tmp); \
	  for f in $$missing; do cp "$$tmp/$${f#$(PROTO_DIR)/}" "$$f"; done; \
	fi

proto: venv
	@echo "==> generating protobuf code from $(PROTO_DIR)/"
	@$(call protoc,$(PROTO_DIR))

lint: setup
	@echo "==> ruff check"
	@$(BIN)/ruff check --quiet .
	@echo "==> ruff format --check"
	@$(BIN)/ruff format --check --quiet .
	@echo "==> mypy"
	@$(BIN)/mypy
	@echo "==> buf lint"
	@$(BUF) lint

drift: setup
	@echo "==> generated code drift check"
	@$(BIN)/pytest -q -ra tests/unit/test_generated_code.py

# The Debian tools tests/unit/deploy runs: systemd-analyze (package systemd) and promtool
# (package prometheus). Installed only when missing and only as root, as CI runs (no stdin);
# otherwise those tests fail naming the package to install.
DEPLOY_TOOLS := systemd-analyze:systemd promtool:prometheus

deploy-tools:
	@missing=; for tool in $(DEPLOY_TOOLS); do \
	  command -v "$${tool%%:*}" >/dev/null 2>&1 || missing="$$missing $${tool##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> installing Debian packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq; \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "==> tests/unit/deploy needs the Debian packages:$$missing (install them as root)"; \
	  fi; \
	fi

# The browser of tests/browser: Debian's chromium (Playwright drives /usr/bin/chromium, it
# downloads no browser) and CJK fonts for the Chinese pages' screenshots. Installed only when
# missing and only as root, as CI runs (no stdin); otherwise the tests fail naming the packages.
browser-tools: axe
	@missing=; [ -x /usr/bin/chromium ] || missing=chromium; \
	fc-list ':lang=zh' 2>/dev/null | grep -q . || missing="$$missing fonts-noto-cjk"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> installing Debian packages: $$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq; \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "==> tests/browser needs the Debian packages:$$missing (install them as root)"; \
	  fi; \
	fi

# axe-core, the accessibility engine the browser tests inject into every page.
axe: $(AXE_STAMP)

$(AXE_STAMP):
	@echo "==> installing axe-core $(AXE_VERSION) into $(TOOLS)"
	@mkdir -p $(TOOLS)
	@npm install --prefix $(TOOLS) --save-exact --silent --no-progress 'axe-core@$(AXE_VERSION)' </dev/null
	@test -f $(TOOLS)/node_modules/axe-core/axe.min.js
	@rm -f $(TOOLS)/.axe-core-* && touch $@

# Each run keeps its temporary files (databases, node data) under a root of its own: pytest
# prunes all but the last three runs under a shared root, which would delete the PostgreSQL
# data of another run still going on the same machine. Kept when a test fails, for reading.
test: lint deploy-tools browser-tools
	@echo "==> pytest tests/ (drift check included)"
	@root=$$(mktemp -d "$${TMPDIR:-/tmp}/certfed-test.XXXXXX"); \
	PYTEST_DEBUG_TEMPROOT=$$root $(BIN)/pytest $(PYTEST_ARGS) tests; status=$$?; \
	if [ $$status -eq 0 ]; then rm -rf "$$root"; else echo "==> test files kept in $$root"; fi; \
	exit $$status

demo: setup
	@$(BIN)/certfed demo $(DEMO_ARGS)

fmt: venv
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

# Fresh resolution of `.[dev]` without constraints, frozen with exact pins (all transitive).
constraints:
	@echo "==> resolving .[dev] in a throwaway venv"
	@rm -rf $(TOOLS)/constraints-venv
	@$(PYTHON) -m venv $(TOOLS)/constraints-venv
	@$(TOOLS)/constraints-venv/bin/python -m pip install -q --upgrade 'pip==$(PIP_VERSION)'
	@$(TOOLS)/constraints-venv/bin/python -m pip install -q -e '.[dev]'
	@{ echo "# Exact pins of everything .[dev] resolves to; regenerate with 'make constraints'."; \
	   $(TOOLS)/constraints-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	@rm -rf $(TOOLS)/constraints-venv
	@echo "==> wrote constraints.txt"

clean:
	@echo "==> removing $(VENV) $(TOOLS) and caches"
	@rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
	@find . -path ./.git -prune -o -type d -name __pycache__ -exec rm -rf {} +
