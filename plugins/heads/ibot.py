"""The iBOT patch head: the DINO head's architecture under its own name (Zhou et al. 2022, section 3.3;
DINOv2, Oquab et al. 2023, section 4).

DINOv2's ViT-L/14 and ViT-g recipes give iBOT a separate head of the same shape; smaller
recipes share the DINO head. In sslkit both are recipe choices:

- separate heads: declare ``model.heads.ibot: {type: ibot}`` and keep the iBOT loss's
  default ``head: ibot``;
- shared head: declare only the ``dino`` head and set the iBOT loss's ``head: dino`` (the
  engine then runs that head once on CLS and masked patch tokens together).
"""

from __future__ import annotations

from dataclasses import dataclass

from sslkit_plugins.heads.dino import DINOHead, DINOHeadParams


@dataclass
class IBOTHeadParams(DINOHeadParams):
    """Parameters of the ``ibot`` head (the same as the ``dino`` head's)."""


class IBOTHead(DINOHead):
    """iBOT head for masked patch tokens: MLP -> L2-normalise -> ``out_dim`` weight-normalised prototypes.

    Same architecture, defaults and initialisation as :class:`DINOHead`; to share one head
    between the DINO and iBOT losses, point the iBOT loss at head ``dino`` instead.
    """
