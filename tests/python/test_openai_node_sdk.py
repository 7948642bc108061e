"""The official `openai` package from npm against a real gateway node: tests/node/openai_client.cjs
(a completion, a stream, a RateLimitError with its headers, the SDK's own retry, an exhausted
budget it does not retry), run with Node.js against a stack started here.

The package is installed once into target/node-openai<major> (npm, pinned to a major version:
6 on Node.js 20 and later, which it requires; 4 on an older Node.js such as Debian 12's 18);
Node.js and npm come from scripts/ensure-deps.sh --test. LLMRL_NPM_OPENAI_MAJOR picks another major."""

import os
import subprocess

import pytest

from conftest import ROOT, budget_keys, stack


KEYS = """
[[keys]]
name = "node"
key = "sk-node"
rpm = 100

[[keys]]
name = "node-once"
key = "sk-node-once"
rpm = 1
window_ms = 600
""" + budget_keys("gpt-4o-mini")


def openai_major():
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    return 6 if int(node.stdout.strip().lstrip("v").split(".")[0]) >= 20 else 4


@pytest.fixture(scope="module")
def node_modules():
    major = os.environ.get("LLMRL_NPM_OPENAI_MAJOR") or openai_major()
    prefix = ROOT / "target" / f"node-openai{major}"
    if not (prefix / "node_modules" / "openai" / "package.json").exists():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                        "--silent", f"openai@{major}"], check=True, timeout=300)
    return prefix / "node_modules"


def test_the_npm_openai_client_works_unmodified(node_modules):
    with stack(KEYS, ["--mock-tokens", "16"]) as (url,):
        env = dict(os.environ, LLMRL_GATEWAY_URL=url, NODE_PATH=str(node_modules))
        run = subprocess.run(["node", str(ROOT / "tests" / "node" / "openai_client.cjs")],
                             env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "every check passed" in run.stdout
