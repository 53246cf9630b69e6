#!/bin/sh
# The migration step of every deployed form: systemd's referral-migrate.service,
# compose's `migrate` service and the Kubernetes Job `referral-migrate`. It runs
# once per release, before web, Rasa and the action server, with their
# environment. `referral-assistant migrate` in the production profile first
# makes the checks `referral-assistant run` makes (PostgreSQL URLs, every
# secret: without them a missing DATABASE_URL would quietly become a SQLite
# file), then creates Rasa's conversation tables once (two instances starting
# at once race to), then migrates the referral store; it stops with a message
# and exit 1 on the first problem.
set -eu
cd "$(dirname "$0")/.."
exec .venv/bin/referral-assistant migrate
