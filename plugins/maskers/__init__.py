"""Built-in maskers: which patches of a selected global crop are replaced by the mask token."""

import sslkit
from sslkit.hookspecs import Register
from sslkit_plugins.maskers.bernoulli import BernoulliMasker, BernoulliMaskerParams
from sslkit_plugins.maskers.block import BlockMasker, BlockMaskerParams


@sslkit.hookimpl
def register_maskers(register: Register) -> None:
    register(
        "block",
        BlockMasker,
        BlockMaskerParams,
        summary="BEiT-style rectangles with stratified mask ratios in [0.1, 0.5] (DINOv2 default).",
    )
    register(
        "bernoulli",
        BernoulliMasker,
        BernoulliMaskerParams,
        summary="Every patch masked independently with a fixed probability.",
    )
