"""``run.precision: auto``: bf16 where the hardware computes it natively, fp32 elsewhere; the choice
is logged and saved in the run directory, and an explicit bf16 on a CPU that emulates it warns."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from sslkit import hardware
from sslkit.engine.precision import announce, resolve_precision
from sslkit.engine.run_dir import RUN_INFO_FILE
from sslkit.engine.trainer import Trainer
from sslkit.recipe import load_recipe
from sslkit.recipe.compose import load_layers

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 avx512_vnni

processor\t: 1
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 avx512_vnni
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid bf16 i8mm
CPU part\t: 0xd40
"""


def test_cpuinfo_is_parsed_for_x86_and_arm64() -> None:
    model, flags = hardware._parse_cpuinfo(X86_CPUINFO)
    assert model == "AMD EPYC 9654 96-Core Processor" and {"avx2", "avx512f", "avx512_bf16"} <= flags
    assert hardware.cpu_has_native_bf16(flags, "x86_64")
    model, flags = hardware._parse_cpuinfo(ARM_CPUINFO)
    assert model == "" and hardware.cpu_has_native_bf16(flags, "aarch64")


@pytest.mark.parametrize(("flags", "machine", "native"), [
    ({"avx2", "avx512f"}, "x86_64", False),  # AVX512F alone emulates bf16 (this test machine)
    ({"avx2"}, "AMD64", False),
    ({"avx512f", "avx512_bf16"}, "x86_64", True),  # Cooper Lake, Zen 4
    ({"amx_bf16", "amx_tile"}, "x86_64", True),  # Sapphire Rapids
    ({"bf16"}, "x86_64", False),  # not an x86 flag
    ({"asimd", "bf16"}, "aarch64", True),  # Graviton 3
    ({"asimd"}, "arm64", False),
    (set(), "arm64", False),  # macOS: flags unknown, conservative
])
def test_native_bf16_rule(flags: set[str], machine: str, native: bool) -> None:
    assert hardware.cpu_has_native_bf16(flags, machine) is native


@pytest.mark.parametrize(("device", "native", "resolved"), [
    (CPU, True, "bf16"), (CPU, False, "fp32"), (GPU, True, "bf16"), (GPU, False, "fp32"),
])
def test_auto_resolves_to_bf16_only_where_it_is_native(device: torch.device, native: bool, resolved: str) -> None:
    choice = resolve_precision("auto", device, native_bf16=native, cpu="Test CPU")
    assert (choice.requested, choice.resolved, choice.warning) == ("auto", resolved, None)
    assert ("natively" in choice.reason) is native


def test_explicit_precisions_are_kept_and_emulated_bf16_warns(caplog) -> None:
    assert resolve_precision("fp32", CPU, native_bf16=True).resolved == "fp32"
    assert resolve_precision("bf16", CPU, native_bf16=True).warning is None
    assert resolve_precision("bf16", GPU, native_bf16=False).warning is None  # check_precision refuses it instead
    choice = resolve_precision("bf16", CPU, native_bf16=False, cpu="Intel Xeon")
    assert choice.resolved == "bf16"
    with caplog.at_level(logging.INFO, logger="sslkit"):
        announce(choice)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Intel Xeon" in warnings[0] and "10-20x slower than fp32" in warnings[0]
    assert "precision: bf16 -> bf16" in caplog.text


def test_run_saves_and_uses_the_resolved_precision(tmp_path, quickstart, tiny_overrides, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="sslkit"):
        trainer = Trainer(load_recipe(quickstart, [*tiny_overrides, "run.device=cpu"]), tmp_path)
    expected = "bf16" if hardware.cpu_has_native_bf16() else "fp32"
    assert trainer.recipe.run.precision == "auto" and trainer.precision.resolved == expected
    assert f"precision: auto -> {expected}" in caplog.text
    info = json.loads((tmp_path / RUN_INFO_FILE).read_text())
    assert info["precision"]["requested"] == "auto" and info["precision"]["resolved"] == expected
    assert info["cpu"]["cpu_model"] == hardware.cpu_model_and_flags()[0]
    assert set(info["cpu"]["flags"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}
    assert info["device"] == "cpu" and info["cpu"]["torch"] == torch.__version__


def test_every_shipped_recipe_uses_auto() -> None:
    recipes = sorted(p for p in RECIPES.rglob("*.yaml") if "ablations" not in p.parts)
    assert len(recipes) >= 5
    for path in recipes:
        data, _ = load_layers(path)
        assert data.get("run", {}).get("precision", "auto") == "auto", f"{path}: run.precision is not auto"
    for path in (RECIPES / "ablations").glob("*.yaml"):
        assert "run.precision" not in path.read_text(), f"{path} sets run.precision"
    assert load_recipe(RECIPES / "quickstart.yaml").recipe.run.precision == "auto"  # the default
