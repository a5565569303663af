"""``make gpu-check`` in its CPU form: every section of benchmarks/gpu_check.py runs with tiny sizes
and the report holds them all, so that the GPU check cannot rot between sessions lent a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["environment", "throughput", "precision", "augmentation", "strategies", "cuda_tests", "compile"]


def test_cpu_form_runs_every_section_and_writes_the_report(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--form", "cpu",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "gpu-check.json").read_text(encoding="utf-8"))
    sections = {s["name"]: s for s in report["sections"]}
    assert list(sections) == SECTIONS
    failed = {name: s.get("error", s["summary"]) for name, s in sections.items() if s["status"] != "ok"}
    assert not failed, failed
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sections["cuda_tests"]["details"]["skipped"] == sections["cuda_tests"]["details"]["tests"] > 0
    assert sections["strategies"]["details"]["backend"] == "gloo"
    assert {sections["strategies"]["details"][s]["resolved"] for s in ("ddp", "fsdp2")} == {"ddp", "fsdp2"}
    assert sections["throughput"]["details"]["tflops_per_step"] > 0
    assert all(sections["precision"]["details"][p]["losses_finite"] for p in ("fp32", "bf16"))
    text = (tmp_path / "gpu-check.md").read_text(encoding="utf-8")
    table = text.rstrip().splitlines()[-len(SECTIONS):]  # the report ends with the summary table
    assert [row.split("|")[2].strip() for row in table] == SECTIONS
    assert done.stdout.rstrip().endswith(text.rstrip().splitlines()[-1])


def _check(tmp_path: Path, *args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--form", "cpu",
                           "--out", str(tmp_path), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads((tmp_path / "gpu-check.json").read_text(encoding="utf-8"))


def test_a_failing_section_is_recorded_and_the_next_one_runs(tmp_path: Path) -> None:
    code, report = _check(tmp_path, "--recipe", str(tmp_path / "missing.yaml"), "--sections", "throughput",
                          "environment")
    throughput, environment = report["sections"]
    assert throughput["status"] == "error" and "missing.yaml" in throughput["error"]
    assert environment["status"] == "ok" and code == 1


def test_sections_beyond_the_budget_are_skipped_with_a_note(tmp_path: Path) -> None:
    code, report = _check(tmp_path, "--budget", "0", "--sections", "environment", "precision")
    assert [s["status"] for s in report["sections"]] == ["skipped", "skipped"] and code == 0
    assert "budget" in report["sections"][0]["summary"]
