"""Copying external weights into a module by name, and what a backbone reports about it.

A backbone that knows other layouts (the ``vit`` backbone: DINOv2 releases, timm, Hugging Face
``transformers``) converts the source to its own names first and then loads by name; any other
backbone loads the names that match its own state dict exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn


@dataclass
class LoadResult:
    """What loading a source into a module did.

    ``loaded``: the module's tensors that received a value; ``missing``: those that did not (they
    keep their initial value); ``unexpected``: source tensors with no place in the module (in the
    module's naming after conversion); ``mismatched``: names present on both sides with different
    shapes (not loaded); ``reshaped``: loaded tensors that were transformed to fit (name -> how);
    ``layout``: the layout the source was read as; ``description``: what the source looks like.
    """

    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    reshaped: dict[str, str] = field(default_factory=dict)
    description: str = ""


def load_by_name(
    module: nn.Module,
    state: dict[str, Tensor],
    layout: str = "by name",
    reshaped: dict[str, str] | None = None,
    description: str = "",
) -> LoadResult:
    """Copy every tensor of ``state`` whose name and shape match one of ``module``'s state dict
    into it (cast to the module's dtype); everything else is reported, nothing raises."""
    own = module.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    mismatched = [
        f"{k} {tuple(state[k].shape)} (model {tuple(own[k].shape)})"
        for k in own
        if k in state and k not in fitting
    ]
    module.load_state_dict(fitting, strict=False)
    return LoadResult(
        layout=layout,
        loaded=[k for k in own if k in fitting],
        missing=[k for k in own if k not in state],
        unexpected=sorted(k for k in state if k not in own),
        mismatched=mismatched,
        reshaped={k: v for k, v in (reshaped or {}).items() if k in fitting},
        description=description,
    )
