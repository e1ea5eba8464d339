"""benchmarks/guarantees.py writes the Guarantees page from one complete, passing run only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "guarantees.py"
SUITE = """
def test_01_first(x: int) -> None: ...
def test_02_second(x: int) -> None: ...
"""


def generate(tmp_path: Path, **results: Any) -> tuple[subprocess.CompletedProcess[str], Path]:
    suite, source, output = tmp_path / "suite.py", tmp_path / "faults.json", tmp_path / "g.md"
    suite.write_text(SUITE)
    run: dict[str, Any] = {
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "dirty": False,
        "finished": "2026-01-02 03:04 UTC",
        "seconds": 192.0,
        "failed": [],
        "guarantees": [
            {"test": "test_02_second", "promise": "Second | promise", "figure": "2 x 201"},
            {"test": "test_01_first", "promise": "First promise", "figure": "1 x 201"},
        ],
    }
    source.write_text(json.dumps(run | results))
    arguments = ["--results", source, "--output", output, "--suite", suite]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, arguments)],
        capture_output=True,
        text=True,
        check=False,
    )
    return done, output


def test_a_complete_run_becomes_the_table_in_suite_order(tmp_path: Path) -> None:
    done, output = generate(tmp_path)
    assert done.returncode == 0, done.stderr
    page = output.read_text()
    assert "at commit `0123456789ab`, on the 2-core machine" in page
    assert "the whole suite took 3.2 minutes" in page
    rows = [line for line in page.splitlines() if line.startswith("| ")]
    assert rows[1:] == [
        "| First promise | `test_01_first` | 1 x 201 |",
        "| Second \\| promise | `test_02_second` | 2 x 201 |",
    ]


def test_uncommitted_changes_and_a_busy_machine_are_said(tmp_path: Path) -> None:
    done, output = generate(tmp_path, dirty=True, load_average=31.5)
    assert done.returncode == 0, done.stderr
    page = output.read_text()
    assert "`0123456789ab` with uncommitted changes" in page
    assert "its 5-minute load average was 31.5 at the end" in page


def test_a_failed_or_partial_run_writes_nothing(tmp_path: Path) -> None:
    failed, output = generate(tmp_path, failed=["test_02_second"])
    assert failed.returncode == 1 and "failures: test_02_second" in failed.stderr
    partial, _ = generate(
        tmp_path, guarantees=[{"test": "test_01_first", "promise": "p", "figure": "f"}]
    )
    assert partial.returncode == 1 and "left out test_02_second" in partial.stderr
    assert not output.exists()
