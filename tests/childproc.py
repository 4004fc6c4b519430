"""Run model code in a child process, so that a crash of a native library (llama.cpp built for
another CPU dies with SIGSEGV or SIGILL) fails one test with a clear message instead of killing
pytest. The child's code calls ``emit(obj)`` once; :func:`run_child` returns ``obj``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

_MARK = "CHILD-RESULT "
_PRELUDE = (
    "import json, sys\n"
    "def emit(obj):\n"
    f"    sys.stdout.write('\\n{_MARK}' + json.dumps(obj) + '\\n'); sys.stdout.flush()\n"
)


def run_child(code: str, *, timeout: float = 900, what: str = "model code") -> object:
    """Run ``code`` (dedented) in a fresh interpreter with this checkout importable; return
    what it passed to ``emit``. A signal, a non-zero exit, a timeout or no result fails the
    calling test, naming ``what`` and showing the end of the child's stderr."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env=env,
        )
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None:
        pytest.fail(f"{what}: the child process did not finish within {timeout:.0f} s", pytrace=False)
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    if proc.returncode < 0:
        num = -proc.returncode
        name = signal.Signals(num).name if num in signal.Signals._value2member_map_ else f"signal {num}"
        pytest.fail(
            f"{what}: the child process was killed by {name} (a native crash: a llama.cpp built with "
            f"-march=native on a CPU with AMX/AVX-512? rebuild it with `make local-fast`)\n{tail}",
            pytrace=False,
        )
    if proc.returncode != 0:
        pytest.fail(f"{what}: the child process exited {proc.returncode}\n{tail}", pytrace=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK) :])
    pytest.fail(f"{what}: the child process gave no result\n{tail}", pytrace=False)
