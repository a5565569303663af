"""Built-in crop policies: which global crops of the global batch get a mask."""

import sslkit
from sslkit.hookspecs import Register
from sslkit_plugins.crop_policies.one_per_image import OnePerImage, OnePerImageParams
from sslkit_plugins.crop_policies.random_fraction import RandomFraction, RandomFractionParams


@sslkit.hookimpl
def register_crop_policies(register: Register) -> None:
    register(
        "random_fraction",
        RandomFraction,
        RandomFractionParams,
        summary="A uniformly random int(fraction * n_global * G) of all global crops (official, 0.5).",
    )
    register(
        "one_per_image",
        OnePerImage,
        OnePerImageParams,
        summary="Exactly one global crop of every image, chosen uniformly at random.",
    )
