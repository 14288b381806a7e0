"""Run the `lapis` CLI as a user would: a subprocess, from a folder that is
not the repository, finding its server through LAPIS_HOME."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.server import server_env


class Cli:
    def __init__(self, home: Path, cwd: Path, **env: str):
        self.env = server_env(home, **env)
        self.cwd = cwd
        cwd.mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "lapis", *args], env=self.env, cwd=self.cwd,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert done.returncode == expect, f"lapis {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str) -> object:
        return json.loads(self(*args).stdout)

    def fails(self, code: str, *args: str) -> str:
        """An ARM error printed the way az prints it; returns its message."""
        done = self(*args, expect=1)
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert lines[0].startswith(f"ERROR: ({code}) ") and lines[1] == f"Code: {code}", done.stderr
        assert lines[2].startswith("Message: "), done.stderr
        return lines[2][len("Message: "):]
