"""The heads plugin registers the dino and ibot heads with documented parameter schemas."""

from __future__ import annotations

import dataclasses

from sslkit.components import BuildContext, Head
from sslkit.params import field_doc, validate
from sslkit_plugins.heads import register_heads


def test_heads_are_registered_documented_and_buildable() -> None:
    registered = {}
    register_heads(lambda name, factory, params, summary=None: registered.update({name: (factory, params, summary)}))
    assert set(registered) == {"dino", "ibot"}
    for name, (factory, params, summary) in registered.items():
        assert summary and factory.__doc__, name
        assert all(field_doc(f) for f in dataclasses.fields(params)), name
        head = factory(
            validate(params, {"out_dim": 16, "hidden_dim": 8, "bottleneck_dim": 4}), BuildContext(embed_dim=6)
        )
        assert isinstance(head, Head) and head.out_dim == 16
