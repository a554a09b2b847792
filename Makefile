# goldtrail. A newcomer needs two commands: `make run` and `make test` (see README.md).
# Both create .venv and install what they need; `make test` also installs the Debian
# packages the tests use (apt-get, only when something is missing).

SHELL := /bin/bash
.DEFAULT_GOAL := help
.NOTPARALLEL:

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.goldtrail-installed

# Debian packages for the tests: Go and x/mod build ../shared/tools/goverify, PostgreSQL
# gives throwaway test servers, Chromium drives the page tests (Playwright never downloads
# a browser here).
APT_PACKAGES := golang-go golang-golang-x-mod-dev postgresql chromium

# Extra pytest arguments, e.g. `make test PYTEST_ARGS='-k infra -x'`.
PYTEST_ARGS ?=
# When set, the test targets write pytest's exit code there (.ci/run reads it).
PYTEST_STATUS_FILE ?=

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

# ensure-apt PKG...: install the packages that are missing, with one apt-get update first.
# A package counts as present when what we use from it is there, so an image that already
# has PostgreSQL under /usr/lib/postgresql/*/bin needs nothing more. Not root: sudo if it
# exists, else print what is missing and carry on (the tests that need it skip, or fail in CI).
define APT_SCRIPT
set -u
have() {
  case "$$1" in
    golang-go) command -v go >/dev/null 2>&1 ;;
    golang-golang-x-mod-dev) [ -d /usr/share/gocode/src/golang.org/x/mod/sumdb/note ] ;;
    postgresql) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
                || [ -x "$$(pg_config --bindir 2>/dev/null)/initdb" ] ;;
    chromium) [ -x /usr/bin/chromium ] ;;
    python3-venv) $(PYTHON) -c 'import ensurepip' >/dev/null 2>&1 ;;
    *) dpkg-query -W -f='$${Status}' "$$1" 2>/dev/null | grep -q ' installed' ;;
  esac
}
missing=""
for p in "$$@"; do have "$$p" || missing="$$missing $$p"; done
[ -z "$$missing" ] && exit 0
if [ "$$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "goldtrail: missing system packages:$$missing" >&2
  echo "  as root: apt-get update && apt-get install -y$$missing" >&2
  exit 0
fi
echo "goldtrail: installing system packages:$$missing"
$$sudo apt-get update -q
$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing
endef
export APT_SCRIPT

# run-pytest ENV: run pytest, record its exit code for .ci/run, exit with it.
define run-pytest
echo "+ $(strip $(1) $(BIN)/pytest $(PYTEST_ARGS))"; \
rc=0; $(1) $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
if [ -n "$(PYTEST_STATUS_FILE)" ]; then echo "$$rc" > "$(PYTEST_STATUS_FILE)"; fi; \
exit $$rc
endef

.PHONY: help venv sysdeps run test test-long lint openapi bench clean

help:
	@echo "make run        run the service (SQLite, keys in ./goldtrail-log.key and next to it)"
	@echo "make test       install everything needed and run every test"
	@echo "make test-long  the same with GOLDTRAIL_LONG=1 (slow tests, more examples)"
	@echo "make lint       ruff check, ruff format --check, mypy --strict on ledger/ and clients/"
	@echo "make openapi    regenerate openapi/openapi.json"
	@echo "make bench      run bench/run_all.py"
	@echo "make venv       create .venv and install goldtrail with its dev extra"
	@echo "make sysdeps    install the Debian packages the tests need"
	@echo "make clean      remove caches and build output (keeps .venv, databases and keys)"

venv: $(STAMP)

$(BIN)/pip:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "goldtrail needs Python >= 3.11; $(PYTHON) is $$($(PYTHON) -V 2>&1)" >&2; exit 1; }
	@bash -c "$$APT_SCRIPT" ensure-apt python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when pyproject.toml changes (the install is editable).
$(STAMP): pyproject.toml | $(BIN)/pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

sysdeps:
ifeq ($(GOLDTRAIL_SKIP_SYSDEPS),1)
	@echo "sysdeps: skipped (GOLDTRAIL_SKIP_SYSDEPS=1)"
else
	@bash -c "$$APT_SCRIPT" ensure-apt $(APT_PACKAGES)
endif

run: venv
	$(BIN)/goldtrail serve

test: sysdeps venv
	@$(call run-pytest,)

test-long: sysdeps venv
	@$(call run-pytest,GOLDTRAIL_LONG=1)

lint: venv
	@rc=0; \
	echo "+ ruff check ."; $(BIN)/ruff check . || rc=1; \
	echo "+ ruff format --check ."; $(BIN)/ruff format --check . || rc=1; \
	echo "+ mypy (strict: ledger clients)"; $(BIN)/mypy || rc=1; \
	exit $$rc

openapi: venv
	$(BIN)/python -m api.openapi

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf build dist ./*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
