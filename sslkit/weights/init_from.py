"""``init_from``: initialise a backbone from external weights, with a report, and fail loudly
when too little of it was loaded.

The backbone does the layout-specific part: a backbone with a ``load_external_weights(state,
layout)`` method (the ``vit`` backbone: sslkit, DINOv2 release, timm and Hugging Face layouts,
position embeddings interpolated, patch embeddings resized) converts the source itself; any
other backbone loads the tensors whose names and shapes match its own. Below ``min_fraction``
of the backbone's tensors, counted by tensor or by element, is an :class:`SSLKitError` naming
what was missing, so that a checkpoint that fits a small part of the model never trains silently
from (mostly) random weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sslkit.components import Backbone
from sslkit.errors import SSLKitError
from sslkit.weights.report import InitReport
from sslkit.weights.sources import read_weights

DEFAULT_MIN_FRACTION = 0.9


def initialise(
    backbone: Backbone,
    source: str | Path,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    layout: str = "auto",
    log: Callable[[str], None] | None = print,
) -> InitReport:
    """Load ``source`` (see :mod:`sslkit.weights.sources`) into ``backbone`` and return the report;
    ``log`` receives its summary. ``layout`` forces the source layout where the backbone knows
    several (``auto`` detects it from the names)."""
    if not 0.0 <= min_fraction <= 1.0:
        raise SSLKitError(f"init_min_fraction must be in [0, 1], got {min_fraction}")
    weights = read_weights(source)
    result = backbone.load_external_weights(weights.state, layout)
    own = backbone.state_dict()
    loaded = set(result.loaded)
    report = InitReport(
        source=str(source),
        file=str(weights.file),
        kind=weights.kind,
        layout=result.layout,
        description=result.description,
        total_tensors=len(own),
        loaded_tensors=len(loaded),
        total_elements=sum(t.numel() for t in own.values()),
        loaded_elements=sum(t.numel() for k, t in own.items() if k in loaded),
        min_fraction=min_fraction,
        loaded=result.loaded,
        missing=result.missing,
        unexpected=result.unexpected,
        mismatched=result.mismatched,
        reshaped=result.reshaped,
    )
    if log is not None:
        log(report.summary())
    short = report.shortfalls()
    if short:
        raise SSLKitError(
            f"init_from {source}: only {report.tensor_fraction:.1%} of the backbone's tensors and "
            f"{report.element_fraction:.1%} of its elements were loaded; init_min_fraction is "
            f"{min_fraction:g} (too few by {' and by '.join(short)}). The source does not fit this backbone: "
            f"check its size, patch size, registers and feed-forward type against the source, or lower "
            f"init_min_fraction to start from a partial fit on purpose.\n{report.summary()}"
        )
    return report
