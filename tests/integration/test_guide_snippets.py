"""The setup guide's Python snippet (Step 5), verbatim, run as a user would:
a separate process with only the four exported variables set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SNIPPET = Path(__file__).resolve().parents[1] / "snippets" / "first_call.py"


def run_snippet(env_vars: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_OPENAI", "OPENAI_"))}
    env.update(env_vars)
    return subprocess.run([sys.executable, str(SNIPPET)], env=env, capture_output=True, text=True, timeout=60)


def test_python_snippet_runs_unmodified(demo):
    done = run_snippet(demo)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().split()) >= 3


def test_python_snippet_default_api_version_also_works(demo):
    env = {k: v for k, v in demo.items() if k != "AZURE_OPENAI_API_VERSION"}  # the snippet's 2024-07-01-preview
    done = run_snippet(env)
    assert done.returncode == 0, done.stderr


def test_python_snippet_fails_loudly_on_a_wrong_deployment(demo):
    done = run_snippet({**demo, "AZURE_OPENAI_DEPLOYMENT": "missing"})
    assert done.returncode != 0
    assert "404 Client Error" in done.stderr
