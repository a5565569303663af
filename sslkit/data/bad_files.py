"""Images that fail to decode: deterministic replacement in the workers, accounting in the main process.

A loader worker that cannot decode item ``i`` loads ``i + 1`` instead (then ``i + 2``, ...),
so every batch keeps its size and its content does not depend on the number of workers or
processes, and reports the failures with the batch. The main process logs each distinct bad
file once and stops the run with an :class:`~sslkit.errors.SSLKitError` when too large a
fraction of the images read failed.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from sslkit.errors import SSLKitError

log = logging.getLogger("sslkit")

#: Exceptions that mean "this file is not a decodable image" (PIL's UnidentifiedImageError
#: and "image file is truncated" are OSErrors; some broken files raise the others).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)
MAX_REPLACEMENTS = 100
#: The bad fraction is judged over at least this many images (or the whole dataset if smaller).
MIN_JUDGED_IMAGES = 1000


def describe(dataset: Any, index: int) -> str:
    """The dataset's description of item ``index`` (its file), or ``item <index>``."""
    try:
        return str(dataset.describe(index))
    except Exception:
        return f"item {index}"


@dataclass
class Loaded:
    """What a worker loaded for one requested index."""

    index: int  # the dataset index actually used (the requested one unless it was bad)
    label: int
    value: Any  # the prepared data
    bad: list[str] = field(default_factory=list)  # "<file>: <error>" for each failed attempt


class ReplacementsExhausted(SSLKitError):
    """Every image from the requested one to the replacement bound failed to decode."""


def load_with_replacement(dataset: Any, index: int, prepare: Callable[[Any], Any]) -> Loaded:
    """``prepare(dataset[index][0])``, substituting the next indices for images that fail to decode.

    Raises :class:`ReplacementsExhausted` after ``MAX_REPLACEMENTS + 1`` failures in a row (or
    the whole dataset, if smaller).
    """
    bad: list[str] = []
    size = len(dataset)
    for attempt in range(min(size, MAX_REPLACEMENTS + 1)):
        current = (index + attempt) % size
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image, label = dataset[current]
            return Loaded(current, int(label), prepare(image), bad)
        except DECODE_ERRORS as exc:
            bad.append(f"{describe(dataset, current)}: {type(exc).__name__}: {exc}")
    shown = bad if len(bad) <= 6 else [*bad[:3], f"... {len(bad) - 5} more ...", *bad[-2:]]
    raise ReplacementsExhausted(
        f"{len(bad)} consecutive images failed to decode (the replacement bound is {MAX_REPLACEMENTS}), from "
        f"{describe(dataset, index)} to {describe(dataset, (index + len(bad) - 1) % size)}; is the dataset "
        "readable at all? Failures:\n" + "\n".join(f"  - {b}" for b in shown)
    )


class BadFileTracker:
    """Counts the failed reads of one process and raises past ``max_fraction``.

    The fraction is failed reads over all reads (delivered images plus failed reads), judged
    over at least ``min(dataset_size, MIN_JUDGED_IMAGES)`` reads so that one bad file in the
    first batch of a large dataset does not stop the run. Each process judges its own reads
    (a failing process ends a torchrun job).
    """

    def __init__(self, dataset_size: int, max_fraction: float) -> None:
        self.dataset_size = dataset_size
        self.max_fraction = max_fraction
        self.images = 0
        self.failures = 0
        self.files: dict[str, None] = {}  # distinct bad files, in order of discovery

    def update(self, n_images: int, bad: list[str]) -> None:
        self.images += n_images
        self.failures += len(bad)
        for entry in bad:
            if entry not in self.files:
                self.files[entry] = None
                log.warning("could not decode %s; the next image of the dataset was used instead", entry)
        reads = self.images + self.failures
        if self.failures > self.max_fraction * max(reads, min(self.dataset_size, MIN_JUDGED_IMAGES)):
            examples = "\n".join(f"  - {f}" for f in list(self.files)[:5])
            raise SSLKitError(
                f"{self.failures} of {reads} images read failed to decode ({self.failures / reads:.2%}, "
                f"{len(self.files)} distinct files), more than data.max_bad_fraction = {self.max_fraction:.2%}. "
                f"Fix or remove the files, or raise data.max_bad_fraction. Bad files:\n{examples}"
            )
