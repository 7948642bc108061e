#!/usr/bin/env bash
# Compatibility tests with the official openai Python package, in a private virtualenv
# (target/pyenv) so nothing is installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/pyenv
if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/python" -c 'import openai' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check openai pytest
fi
exec "$venv/bin/pytest" -q tests/python "$@"
