# `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export RASA_TELEMETRY_ENABLED := false
export SQLALCHEMY_SILENCE_UBER_WARNING := 1

SCHEMATHESIS_VERSION := 3.39.16
# Newer hypothesis releases break schemathesis 3.39 ("'many' object has no attribute 'more'").
SCHEMATHESIS_HYPOTHESIS := 6.123.2
PIP_AUDIT_VERSION := 2.10.1

.PHONY: help setup run run-production schemathesis audit test lint deploy-check unit scores validate train stories browser-deps e2e bench clean

help:
	@echo "make run    set up, train if needed, start everything, print the chat address"
	@echo "make test   set up and run the whole suite"
	@echo "make run-production   the production profile (README: Deployment)"

# Rasa 3.6 needs Python 3.10: PATH first, then pyenv's 3.10 builds.
define find_python
for candidate in python3.10 \
    $$(ls -d "$${PYENV_ROOT:-$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)}"/versions/3.10.*/bin/python3.10 2>/dev/null | sort -V -r); do \
  if "$$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then \
    echo "$$candidate"; exit 0; fi; \
done; exit 1
endef

$(STAMP): pyproject.toml constraints.txt
	@python=$$($(find_python)) || { \
	  echo "Python 3.10 was not found. Rasa 3.6 needs Python 3.10."; \
	  echo "Install it (for example: pyenv install 3.10) and run make again."; exit 1; }; \
	echo "Using $$python"; \
	[ -x $(PY) ] && $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' || \
	  { rm -rf $(VENV); "$$python" -m venv $(VENV); }
	@mkdir -p var && sed -n 's/^\([^#][^ ]*==[^ ]*\)  *# *sha256:\([0-9a-f]\{64\}\)$$/\1 --hash=sha256:\2/p' \
	  constraints.txt > var/hashed-requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r var/hashed-requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/referral-assistant run

# The production profile (README "Deployment"): two Rasa instances behind a small
# proxy, PostgreSQL for conversations and referrals, Redis for the conversation lock.
# Nothing has a default: DATABASE_URL, TRACKER_URL and every secret come from the
# environment (`referral-assistant secrets` prints a new set of secrets).
run-production: $(STAMP)
	REFERRAL_PROFILE=production RASA_INSTANCES=$${RASA_INSTANCES:-2} $(VENV)/bin/referral-assistant run

lint: $(STAMP)
	$(VENV)/bin/ruff check bot actions tests bench

unit: $(STAMP)
	$(PY) -m pytest -m "not e2e and not scoring" -q

# Printed scores: the crisis detector on ../shared/eval/crisis_dev.jsonl and our own cases
# (a table per category), and the reading age of every response (the hardest ones).
scores: $(STAMP)
	$(PY) -m pytest -m scoring -q -s

validate: $(STAMP)
	$(VENV)/bin/rasa data validate --fail-on-warnings --quiet

train: $(STAMP)
	$(VENV)/bin/referral-assistant train

stories: train
	@rm -rf var/results
	$(VENV)/bin/rasa test core --stories tests/test_stories.yml --fail-on-prediction-errors \
	  --model "$$($(PY) -c 'from bot.training import model_path; print(model_path())')" \
	  --out var/results --quiet
	@# --fail-on-prediction-errors stops on a wrong action; a wrong intent only shows in the report.
	@grep -q "None of the test stories failed" var/results/failed_test_stories.yml || \
	  { echo "Conversation tests failed:"; cat var/results/failed_test_stories.yml; exit 1; }
	@echo "Conversation tests: all stories passed."

# axe-core for the browser tests, from the lock file (tests/browser/package-lock.json).
browser-deps:
	@if command -v npm >/dev/null; then cd tests/browser && npm ci --no-audit --no-fund --silent; \
	else echo "npm not found: browser tests will be skipped (REQUIRE_BROWSER makes that a failure)"; fi

# schemathesis in an environment of its own: its dependencies clash with Rasa's pins.
SCHEMATHESIS := .venv-schemathesis/bin/schemathesis
$(SCHEMATHESIS):
	@python=$$(command -v python3.11 || command -v python3) && "$$python" -m venv .venv-schemathesis
	.venv-schemathesis/bin/pip install --quiet --disable-pip-version-check \
	  "schemathesis==$(SCHEMATHESIS_VERSION)" "hypothesis==$(SCHEMATHESIS_HYPOTHESIS)"

schemathesis: $(SCHEMATHESIS)

e2e: train browser-deps schemathesis
	$(PY) -m pytest -m e2e -q

# Static checks of the deployment files: Dockerfile, compose.yaml, deploy/k8s,
# deploy/systemd and both HAProxy configurations (deploy/check.py says how). The
# checkers live in an environment of their own (Python 3.11, deploy/requirements.txt);
# kubectl, systemd-analyze and haproxy come from the system. A missing one is
# a skip, or a failure with REQUIRE_DEPLOY_TOOLS=1 (CI).
DEPLOY_TOOLS := .venv-deploy/.installed
$(DEPLOY_TOOLS): deploy/requirements.txt
	@python=$$(command -v python3.11 || command -v python3) && "$$python" -m venv .venv-deploy
	.venv-deploy/bin/pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
	@touch $@

deploy-check: $(DEPLOY_TOOLS)
	.venv-deploy/bin/python deploy/check.py

# Gates from cheap to expensive.
test: lint deploy-check unit scores validate train stories e2e

# Dependency audit of each environment (the project's, and schemathesis's own), in
# an environment of its own. It needs a vulnerability service (PyPI's JSON API or
# OSV); --strict makes a package it could not check a failure. README "Dependency audit".
AUDIT := .venv-audit/bin/pip-audit
$(AUDIT):
	@python=$$(command -v python3.11 || command -v python3) && "$$python" -m venv .venv-audit
	.venv-audit/bin/pip install --quiet --disable-pip-version-check "pip-audit==$(PIP_AUDIT_VERSION)"

audit: $(STAMP) $(SCHEMATHESIS) $(AUDIT)
	@mkdir -p var
	@status=0; for env in .venv .venv-schemathesis; do \
	  echo "== $$env"; $$env/bin/pip freeze --exclude-editable --disable-pip-version-check > var/audit-requirements.txt; \
	  $(AUDIT) --strict --no-deps --disable-pip --progress-spinner off -r var/audit-requirements.txt || status=1; \
	done; exit $$status

bench: $(STAMP)
	@# bench/lock.py needs Redis (this machine's by default).
	@for b in bench/*.py; do TEST_REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/1} $(PY) $$b; done

clean:
	rm -rf $(VENV) .venv-schemathesis .venv-audit .venv-deploy models var .rasa results
