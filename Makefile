# MailFleet: `make run` starts the control plane on embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYPROJECT_SHA := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
# `make run` needs MailFleet and what it runs on; the tools and test servers of `make test`
# (the dev extra) come on top only when a target needs them.
STAMP := $(VENV)/.installed-$(PYPROJECT_SHA)
DEV_STAMP := $(VENV)/.installed-dev-$(PYPROJECT_SHA)
# Debian packages the tests drive for real (chromium: the console's browser tests, driven
# by Playwright through this executable; no browser is downloaded).
DEBIAN_TEST_PACKAGES ?= postgresql-client restic knot knot-dnsutils pebble strace nftables chromium haproxy docker.io docker-compose openssh-server busybox-static

.PHONY: run test lint typecheck install system-deps postgres clean

# The install's output goes to a log, shown only when it fails (so `make run` ends with
# what serve prints: the API's URL and the admin key).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing MailFleet into $(VENV) (log: $(VENV)/install.log)"
	@{ $(BIN)/python -m pip install --disable-pip-version-check --upgrade pip && \
	   $(BIN)/python -m pip install --disable-pip-version-check -e .; } \
	  > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; echo "install failed (log: $(VENV)/install.log)"; exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

$(DEV_STAMP): $(STAMP)
	@echo "installing the test and lint tools into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]' \
	  >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; echo "install failed (log: $(VENV)/install.log)"; exit 1; }
	@touch $@

install: $(DEV_STAMP)

# `make run` offers the local provider (VPSs as network namespaces) when it runs as root.
LOCAL_PROVIDER ?= $(shell [ "$$(id -u)" -eq 0 ] && echo 1 || echo 0)
# make run's local VPSs cost something, so the cost reports of a demo show money
DEMO_PLAN_PRICES ?= local-small=5.00,local-medium=10.00,local-large=20.00

# make run's local VPSs install their agent as a rented VPS does: from the package serve
# builds and serves (GET /agent/install.sh); the tests' default is this host's own agent.
LOCAL_PROVIDER_AGENT ?= package

run: $(STAMP)
	@MAILFLEET_LOCAL_PROVIDER=$${MAILFLEET_LOCAL_PROVIDER:-$(LOCAL_PROVIDER)} \
	  MAILFLEET_LOCAL_PROVIDER_AGENT=$${MAILFLEET_LOCAL_PROVIDER_AGENT:-$(LOCAL_PROVIDER_AGENT)} \
	  MAILFLEET_LOCAL_PLAN_PRICES=$${MAILFLEET_LOCAL_PLAN_PRICES-$(DEMO_PLAN_PRICES)} \
	  $(BIN)/mailfleet serve --bootstrap-admin-key

system-deps:
	@missing=""; for p in $(DEBIAN_TEST_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start; \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# Two workers on this 2-core machine: the suite spends part of its time waiting (process
# start-up, timers), so it finishes in about half the time of one. A third worker measured
# 941-1,028 s against 961 s with two: the full suite is CPU-bound, and the extra contention
# only made timing-sensitive tests flakier. Every test makes its own names, ports (striped
# per worker), databases and subnets, so workers never meet.
PYTEST_WORKERS ?= 2

# The suite starts hundreds of Python processes (CLI, serve, agents, benchmarks); compiled
# once here, none of them compiles MailFleet's modules again, even where the environment
# says PYTHONDONTWRITEBYTECODE (a stale file is still recompiled, in memory, by Python).
test: $(DEV_STAMP) system-deps postgres lint typecheck
	@$(BIN)/python -m compileall -q -j 0 control_plane agent tests benchmarks > /dev/null
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
