"""A run's output directory: the resolved recipe, the versions that produced the run and the
hardware facts it ran with (the resolved precision, the CPU / device)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch
import yaml

import sslkit
from sslkit.registry import Registry

RECIPE_FILE = "recipe.yaml"
VERSIONS_FILE = "versions.json"
RUN_INFO_FILE = "run_info.json"


def versions(registry: Registry) -> dict[str, Any]:
    """Versions of Python, torch, sslkit and every plugin provider that was loaded."""
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "sslkit": sslkit.__version__,
        "plugins": dict(sorted(registry.providers.items())),
    }


def write_run_files(output_dir: Path, recipe: dict[str, Any], registry: Registry) -> None:
    """Save the resolved recipe and the versions (overwritten on every (re)start)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    text = "# Resolved by sslkit: every default filled in. Re-run with: sslkit train THIS_FILE\n"
    text += yaml.safe_dump(recipe, sort_keys=False, default_flow_style=None)
    (output_dir / RECIPE_FILE).write_text(text, encoding="utf-8")
    (output_dir / VERSIONS_FILE).write_text(json.dumps(versions(registry), indent=2) + "\n", encoding="utf-8")


def write_run_info(output_dir: Path, info: dict[str, Any]) -> None:
    """Save what the run resolved on this machine (precision, device, CPU; overwritten on every (re)start)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RUN_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def version_differences(saved: dict[str, str], current: dict[str, str]) -> list[str]:
    """Plugin providers whose version changed (or appeared/disappeared) since a checkpoint."""
    lines = []
    for name in sorted(set(saved) | set(current)):
        if saved.get(name) != current.get(name):
            lines.append(f"{name}: {saved.get(name, 'absent')} -> {current.get(name, 'absent')}")
    return lines
