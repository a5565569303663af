"""Built-in projection heads: tokens -> logits over prototypes (DINO, Caron et al. 2021, section 3.1;
iBOT, Zhou et al. 2022, section 3.3)."""

import sslkit
from sslkit.hookspecs import Register
from sslkit_plugins.heads.dino import DINOHead, DINOHeadParams
from sslkit_plugins.heads.ibot import IBOTHead, IBOTHeadParams


@sslkit.hookimpl
def register_heads(register: Register) -> None:
    register(
        "dino",
        DINOHead,
        DINOHeadParams,
        summary="DINO head: MLP (in-2048-2048-256, GELU), L2-normalise, weight-normalised prototypes.",
    )
    register(
        "ibot",
        IBOTHead,
        IBOTHeadParams,
        summary="iBOT patch head: the DINO head's architecture, separate weights (or share via loss head: dino).",
    )
