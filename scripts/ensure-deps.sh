#!/usr/bin/env bash
# Make sure the system packages llmrl needs are present: redis-server / redis-cli (to run and
# test the module), libclang (bindgen, used by the redis-module crate at build time), and
# python3 with venv (the compatibility tests with the official openai package). With --test, also
# what only the tests need: Debian's chromium and chromedriver (the dashboard's browser test);
# Node.js and npm (the official openai package from npm); with --test or --bench, valgrind (the
# benchmark's instruction counts).
# As root with apt-get, missing ones are installed; otherwise we say exactly what to install.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
# bindgen loads libclang.so / libclang-N.so; libclang-cpp (present on some machines) does not do.
if ! { ldconfig -p 2>/dev/null | grep -Eq '[[:space:]]libclang(-[0-9.]+)?\.so'; } \
    && ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* >/dev/null 2>&1; then
    missing+=(libclang-dev)
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3 python3-venv)
fi

if [ "${1:-}" = --test ]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    # The official openai package from npm (tests/node), run with Node.js.
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
# The benchmark (and its smoke run in the tests) counts instructions per command with callgrind.
if [ "${1:-}" = --test ] || [ "${1:-}" = --bench ]; then
    command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the redis-server service it just installed on port 6379; llmrl runs its own
    # Redis (with the module) there, so stop the service we brought in.
    if [[ " ${missing[*]} " == *" redis-server "* ]]; then
        systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true
    fi
    exit 0
fi

echo "llmrl needs these packages: ${missing[*]}" >&2
echo "install them, e.g.: sudo apt-get install ${missing[*]}" >&2
exit 1
