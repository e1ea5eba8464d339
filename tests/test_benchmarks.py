"""The benchmark harnesses that run in process still drive the app they measure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

WEB_INSTRUCTIONS = Path(__file__).resolve().parents[1] / "benchmarks" / "web_instructions.py"


@pytest.mark.parametrize("app", ["pedidos", "flask"])
def test_the_instruction_count_harness_gets_201_for_every_order(app: str) -> None:
    # The child exits non-zero unless every one of its orders was answered 201.
    run = subprocess.run(
        [sys.executable, str(WEB_INSTRUCTIONS), "--serve", app, "--requests", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    if app == "pedidos":
        assert run.stderr.count('"order concluido"') == 200 + 20  # warm-up and measured
