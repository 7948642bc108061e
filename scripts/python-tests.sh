#!/usr/bin/env bash
# Compatibility tests with the official openai and anthropic Python packages, in the tests' private virtualenv
# (target/pyenv, see test-venv.sh), so nothing is installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-venv.sh >/dev/null
exec target/pyenv/bin/pytest -q tests/python "$@"
