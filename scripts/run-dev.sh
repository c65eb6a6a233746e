#!/usr/bin/env bash
# `make run`: migrate, create the administrator and the development backend,
# start the mail catcher and a worker, and serve the app at 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export OUTBOUND_DEBUG=${OUTBOUND_DEBUG:-1}
# Alerts to the Backend Failure Email go to the mail catcher too, so they can
# be seen (`outbound mailsink --list`). Set it to your own server to change.
export OUTBOUND_SYSTEM_MAIL_URL=${OUTBOUND_SYSTEM_MAIL_URL:-smtp://127.0.0.1:1025}
mkdir -p var
# Keys of this checkout, made once and kept in var/ (never the public default
# written in config/settings.py): the stored secrets stay readable across runs.
if [ -z "${OUTBOUND_SECRET_KEYS:-}" ] || [ -z "${DJANGO_SECRET_KEY:-}" ]; then
  if [ ! -s var/dev-keys.env ]; then
    (umask 077; $BIN/outbound generate-keys > var/dev-keys.env)
  fi
  set -a; . var/dev-keys.env; set +a
fi
$BIN/outbound migrate --noinput
$BIN/outbound setup-dev
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
$BIN/outbound mailsink --host 127.0.0.1 --port 1025 &
pids+=($!)
sleep 1
$BIN/outbound test-backend "Development mail catcher" || true
$BIN/outbound test-backend "Development SMS console" || true
$BIN/outbound worker --concurrency 2 &
pids+=($!)
echo
echo "Outbound is at http://127.0.0.1:8000  (mail catcher: .venv/bin/outbound mailsink --list)"
# `serve` (waitress) rather than runserver: it also runs the alert checks
# every minute, so a stopped worker is alerted on (mailed to the catcher).
$BIN/outbound serve --host 127.0.0.1 --port 8000
