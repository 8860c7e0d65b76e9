# eventstore: build a cached virtualenv per Salt release line and run the tests / demo in it.
#
#   make test                 # whole suite against Salt 3008
#   make test SALT=3007       # same, against Salt 3007 (own venv: .venv/salt-3007/)
#   make test-unit PYTEST_ARGS='-k store -x'

SALT ?= 3008
PYTHON ?= python3
PYTEST_ARGS ?=
BENCH_ARGS ?=

VENV := .venv/salt-$(SALT)
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Salt 3008 moved the mysql returner out of core into the saltext-mysql extension;
# 3006 and 3007 still ship it.
SALT_MAJOR := $(firstword $(subst ., ,$(SALT)))
EXTRA_PKGS := $(shell [ "$(SALT_MAJOR)" -ge 3008 ] 2>/dev/null && echo saltext-mysql)

PIP := $(VENV_PY) -m pip --disable-pip-version-check
PIP_INSTALL := $(PIP) install --quiet --quiet --root-user-action=ignore

# The install recipe. Its text is written into $(STAMP); when the text here differs
# from the stamp's (recipe edited, other SALT/PYTHON), the stamp is made stale, so
# editing the rest of this Makefile does not cost a rebuild.
define VENV_RECIPE
rm -rf $(VENV)
$(PYTHON) -m venv $(VENV)
$(PIP_INSTALL) "salt==$(SALT).*" -r requirements-test.txt $(EXTRA_PKGS)
endef

define newline


endef
RECIPE_SIG := $(strip $(subst $(newline), ; ,$(VENV_RECIPE)))
ifneq ($(strip $(shell cat $(STAMP) 2>/dev/null)),$(RECIPE_SIG))
$(STAMP): FORCE
endif

.DEFAULT_GOAL := help
.PHONY: help venv test test-unit test-integration test-e2e test-galera test-package lint format dist tools demo bench bench-settings bench-forgeries bench-catch-up bench-progress bench-galera sql clean FORCE

help:
	@echo "eventstore make targets (SALT=$(SALT), venv $(VENV)/):"
	@echo "  venv              build/refresh the cached virtualenv for SALT (3006, 3007, 3008)"
	@echo "  test              run the whole suite (tests/); PYTEST_ARGS=... is passed to pytest"
	@echo "  test-unit         run tests/unit only"
	@echo "  test-integration  run tests/integration only"
	@echo "  test-e2e          run tests/e2e only"
	@echo "  test-galera       run tests/galera only (a throwaway 3-node Galera cluster, 3 masters)"
	@echo "  test-package      build the wheel, install it into a fresh virtualenv with SALT, run tests/e2e/package"
	@echo "  dist              build the sdist and the wheel into dist/"
	@echo "  lint              ruff check and ruff format --check (configured in pyproject.toml)"
	@echo "  format            ruff format the code base"
	@echo "  demo              start a master + minion on loopback, run jobs, query the store"
	@echo "  bench             benchmark reactor and engine modes against their peers (~10 min; bench/README.md)"
	@echo "  bench-settings    benchmark the reactor's Salt settings (~5 min)"
	@echo "  bench-forgeries   how long a forged return holds a reactor thread (~10 s)"
	@echo "  bench-galera      cost of a Galera conflict, time to fail over to another node (~4 min)"
	@echo "  bench-catch-up    what catch-up rounds and a 10,000-row spool replay cost (~5 min)"
	@echo "  bench-progress    what progress reports cost on a big prune and backfill, how often they come (~5 min)"
	@echo "  sql               regenerate sql/mysql.sql, sql/sqlite.sql and sql/postgres.sql from src/saltext/eventstore/schema.py"
	@echo "  clean             remove .venv/, .demo/, .bench/ and dist/"

venv: $(STAMP)

# Rebuilt from scratch when a requirements file or the recipe above changes.
$(STAMP): requirements.txt requirements-test.txt
	@echo "building $(VENV) (salt==$(SALT).* $(EXTRA_PKGS)) ..."
	$(VENV_RECIPE)
	@echo '$(RECIPE_SIG)' > $(STAMP)
	@$(VENV_PY) -c 'import salt.version; print("salt", salt.version.__version__, "ready in $(VENV)")'

test: $(STAMP)
	$(VENV_PY) -m pytest tests $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(VENV_PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(VENV_PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: $(STAMP)
	$(VENV_PY) -m pytest tests/e2e $(PYTEST_ARGS)

test-galera: $(STAMP)
	$(VENV_PY) -m pytest tests/galera $(PYTEST_ARGS)

# The tools (ruff, build): one virtualenv for every Salt line, rebuilt when their pins change.
TOOLS := .venv/tools
TOOLS_STAMP := $(TOOLS)/.installed

$(TOOLS_STAMP): requirements-tools.txt
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip --disable-pip-version-check install --quiet --quiet --root-user-action=ignore -r requirements-tools.txt
	touch $@

tools: $(TOOLS_STAMP)

lint: $(TOOLS_STAMP)
	$(TOOLS)/bin/ruff check .
	$(TOOLS)/bin/ruff format --check .

format: $(TOOLS_STAMP)
	$(TOOLS)/bin/ruff format .

# The sdist, and the wheel built from it (so the sdist is known to be complete).
dist: $(TOOLS_STAMP)
	rm -rf dist
	$(TOOLS)/bin/python -m build --outdir dist .

# The wheel installed into a fresh virtualenv with SALT, as on a master, and the
# end-to-end test through that install (no runner_dirs, nothing synced).  Builds
# the wheel first, unless WHEEL=dist/... names one (CI builds it once for all lines).
PKG_VENV := .venv/package-$(SALT)
WHEEL ?=

test-package: $(if $(WHEEL),,dist)
	rm -rf $(PKG_VENV)
	$(PYTHON) -m venv $(PKG_VENV)
	@# --no-compile: Python compiles the few modules a master imports, not all of Salt (~30 s).
	$(PKG_VENV)/bin/python -m pip --disable-pip-version-check install --quiet --quiet --root-user-action=ignore \
		--no-compile "salt==$(SALT).*" -r requirements-test.txt $(or $(WHEEL),dist/*.whl)
	$(PKG_VENV)/bin/python -m pytest tests/e2e/package $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV_PY) demo/demo.py

# Not part of `make test`: it measures, it does not check.  Results also go to .bench/.
bench: $(STAMP)
	$(VENV_PY) bench/run.py $(BENCH_ARGS)

bench-settings: $(STAMP)
	$(VENV_PY) bench/run.py --settings $(BENCH_ARGS)

bench-forgeries: $(STAMP)
	$(VENV_PY) bench/forgeries.py

bench-galera: $(STAMP)
	$(VENV_PY) bench/galera.py

bench-catch-up: $(STAMP)
	$(VENV_PY) bench/catch_up.py $(BENCH_ARGS)

bench-progress: $(STAMP)
	$(VENV_PY) bench/progress.py $(BENCH_ARGS)

sql: $(STAMP)
	$(VENV_PY) -c 'import sys; sys.path.insert(0, "src"); from saltext.eventstore import schema; schema.write_schema_files("sql")'

clean:
	rm -rf .venv .demo .bench dist

FORCE:
