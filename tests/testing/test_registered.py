"""Temporary registration into the process registry: ``registered`` and the ``sslkit_registry`` fixture."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from sslkit.components import BuildContext, Loss, Output, StepContext, StepInputs
from sslkit.errors import RecipeError
from sslkit.params import param
from sslkit.registry import Provider, get_registry
from sslkit.testing import TESTING_DISTRIBUTION, RegistryScope, registered


@dataclass
class ScaledParams:
    """Parameters of a test loss."""

    scale: float = param(1.0, "Multiplier of the loss.", gt=0.0)


class ScaledLoss(Loss):
    """Mean of the student's CLS tokens times ``scale``."""

    def __init__(self, params: ScaledParams, ctx: BuildContext) -> None:
        super().__init__()
        self.params = params
        self.inputs = {"student": Output("cls")}

    def forward(self, inputs: StepInputs, ctx: StepContext) -> torch.Tensor:
        return inputs["student"].mean() * self.params.scale


def test_registered_component_is_found_validated_and_removed_afterwards() -> None:
    registry = get_registry()
    with registered("loss", "scaled_for_test", ScaledLoss, ScaledParams, summary="A test loss.") as component:
        assert component.provider.distribution == TESTING_DISTRIBUTION
        assert registry.get("loss", "scaled_for_test") is component
        assert component.summary == "A test loss."
        loss = registry.create("loss", "scaled_for_test", scale=2.5)
        assert isinstance(loss, ScaledLoss) and loss.params.scale == 2.5
        with pytest.raises(RecipeError, match=r"must be > 0\.0"):
            registry.create("loss", "scaled_for_test", scale=-1.0)
        assert TESTING_DISTRIBUTION in registry.providers
    assert "scaled_for_test" not in registry.names("loss")
    assert TESTING_DISTRIBUTION not in registry.providers
    assert not [p for p in registry._manager.get_plugins() if getattr(p, "__name__", "").startswith("sslkit_testing")]


def test_registration_is_undone_when_the_block_raises() -> None:
    with pytest.raises(KeyError), registered("loss", "raising_for_test", ScaledLoss, ScaledParams):
        raise KeyError("boom")
    assert "raising_for_test" not in get_registry().names("loss")


def test_existing_names_are_not_shadowed() -> None:
    with (pytest.raises(ValueError, match=r"loss 'dino' is already registered by sslkit .*pick another name"),
          registered("loss", "dino", ScaledLoss, ScaledParams)):
        pass
    assert get_registry().get("loss", "dino").provider.distribution == "sslkit"
    unknown_kind = registered("losses", "x", ScaledLoss, ScaledParams)
    with pytest.raises(ValueError, match="unknown component kind 'losses'"), unknown_kind:
        pass


def test_a_custom_provider_is_reported_as_given() -> None:
    provider = Provider("my-dist", "9.9", "my_module")
    with registered("loss", "provided_for_test", ScaledLoss, ScaledParams, provider=provider) as component:
        assert component.provider == provider
        assert get_registry().providers["my-dist"] == "9.9"
    assert "my-dist" not in get_registry().providers


def test_scope_fixture_registers_until_the_test_ends(sslkit_registry: RegistryScope) -> None:
    sslkit_registry.register("loss", "fixture_for_test", ScaledLoss, ScaledParams)
    loss = sslkit_registry.create("loss", "fixture_for_test", scale=3.0)
    assert loss.params.scale == 3.0
    assert "fixture_for_test" in get_registry().names("loss")


def test_scope_restores_conflicts_and_failures() -> None:
    registry = get_registry()
    scope = RegistryScope(registry)
    before_failures = list(registry.failures)
    scope.register("loss", "scoped_for_test", ScaledLoss, ScaledParams)
    registry.register_module(_clash_module(), Provider("clash-dist", "1.0", "clash"))
    assert ("loss", "scoped_for_test") in registry.conflicts
    scope.restore()
    assert ("loss", "scoped_for_test") not in registry.conflicts
    assert "scoped_for_test" not in registry.names("loss")
    assert "clash-dist" not in registry.providers
    assert registry.failures == before_failures


def _clash_module() -> object:
    import sslkit

    class Clash:
        @staticmethod
        @sslkit.hookimpl
        def register_losses(register):
            register("scoped_for_test", ScaledLoss, ScaledParams)

    return Clash()
