"""What the SDK tests share: a real Redis with the module and real gateway nodes on loopback,
started for a test module and stopped after it."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

ROOT = Path(__file__).resolve().parents[2]
MODULE = os.environ.get("LLMRL_MODULE", str(ROOT / "target/release/libllmrl.so"))
GATEWAY = os.environ.get("LLMRL_GATEWAY", str(ROOT / "target/release/llmrl-gateway"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def budget_keys(model):
    """Keys-file text: key `sk-budget` in an organisation with a day's budget of 50 micro-dollars,
    `model` priced at 1 USD per million tokens (a few requests fit)."""
    return f"""
[[orgs]]
name = "py-org"
budget_usd = 0.00005
budget_period = "day"

[[keys]]
name = "budgeted"
key = "sk-budget"
org = "py-org"

[prices."{model}"]
input = 1.0
output = 1.0
"""


def answered(base_url, status):
    """How many requests the gateway at `base_url` answered with `status`, from its /metrics."""
    text = urllib.request.urlopen(base_url + "/metrics").read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("llmrl_gateway_requests_total{") and f'status="{status}"' in line)


def wait_for_port(port, process, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on {port}")


@contextlib.contextmanager
def stack(keys_text, *gateways, import_policy=False):
    """Redis with llmrl, then one gateway per argument list (its extra flags, and optionally
    `{"env": {...}}` as the list's first item); yields the gateways' base URLs. `import_policy`:
    the keys are imported into Redis first (`llmrl-gateway admin import`), for gateways run with
    `--policies redis`."""
    workdir = Path(tempfile.mkdtemp(prefix="llmrl-py-"))
    processes = []
    try:
        redis_port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--loadmodule", MODULE],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        processes.append(redis)
        wait_for_port(redis_port, redis)
        keys = workdir / "keys.toml"
        keys.write_text(keys_text)
        if import_policy:
            subprocess.run(
                [GATEWAY, "admin", "--redis-url", f"redis://127.0.0.1:{redis_port}/", "import", str(keys)],
                check=True, stdout=subprocess.DEVNULL,
            )
        urls = []
        for flags in gateways or ([],):
            env = dict(os.environ)
            if flags and isinstance(flags[0], dict):
                env.update(flags[0]["env"])
                flags = flags[1:]
            port = free_port()
            gateway = subprocess.Popen(
                [GATEWAY, "--listen", f"127.0.0.1:{port}", "--redis-url", f"redis://127.0.0.1:{redis_port}/",
                 "--keys-file", str(keys), *flags],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )
            processes.append(gateway)
            wait_for_port(port, gateway)
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)
