# `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export RASA_TELEMETRY_ENABLED := false
export SQLALCHEMY_SILENCE_UBER_WARNING := 1

.PHONY: help setup run run-production test lint unit scores validate train stories browser-deps e2e bench clean

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

e2e: train browser-deps
	$(PY) -m pytest -m e2e -q

# Gates from cheap to expensive.
test: lint unit scores validate train stories e2e

bench: $(STAMP)
	@for b in bench/*.py; do $(PY) $$b; done

clean:
	rm -rf $(VENV) models var .rasa results
