"""Installing the distribution is all it takes: its entry point registers the loss and the head."""

from __future__ import annotations

from importlib import metadata

from sslkit.registry import get_registry


def test_the_entry_point_is_installed() -> None:
    points = {ep.name: ep.value for ep in metadata.entry_points(group="sslkit")}
    assert points.get("byol") == "sslkit_byol"


def test_installing_registers_the_loss_and_the_head() -> None:
    registry = get_registry()
    loss, head = registry.get("loss", "byol"), registry.get("head", "byol_mlp")
    for component in (loss, head):
        assert component.provider.distribution == "sslkit-byol", component.provider
