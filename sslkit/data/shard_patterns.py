"""Shard path patterns: brace ranges and lists, then glob wildcards, expanded to a sorted file list.

``shards/train-{000000..001023}.tar`` names 1,024 files (a numeric range keeps the zero padding
of its bounds), ``{train,val}-*.tar`` a list times a wildcard. Braces are expanded first (every
group, left to right, as a cartesian product), then each expanded path that holds ``*``, ``?``
or ``[`` is globbed; a path without wildcards must exist. Several patterns may be given
separated by whitespace. The result is sorted and free of duplicates, so the dataset's index
space (and hence the training order) depends only on the set of files, not on the file system's
listing order.
"""

from __future__ import annotations

import glob
import os
import re

from sslkit.errors import SSLKitError

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
#: The most paths one brace pattern may expand to (a typo like {0..99999999} must not eat memory).
MAX_EXPANSION = 10_000_000


def _alternatives(body: str, pattern: str) -> list[str]:
    """The strings one brace group ``{body}`` stands for."""
    match = _RANGE.match(body)
    if match:
        first, last = match.groups()
        lo, hi = int(first), int(last)
        if hi < lo:
            raise SSLKitError(f"shard pattern {pattern!r}: range {{{body}}} counts down; write {{{last}..{first}}}")
        padded = any(len(b.lstrip("-")) > 1 and b.lstrip("-").startswith("0") for b in (first, last))
        width = max(len(first), len(last)) if padded else 0
        return [str(i).zfill(width) for i in range(lo, hi + 1)]
    if "," in body:
        return body.split(",")
    raise SSLKitError(f"shard pattern {pattern!r}: {{{body}}} is neither a range {{A..B}} nor a list {{a,b}}")


def expand_braces(pattern: str) -> list[str]:
    """Every path ``pattern`` names by its brace groups, in brace order (no file system access)."""
    paths = [""]
    rest = pattern
    while True:
        match = _BRACE.search(rest)
        if match is None:
            return [p + rest for p in paths]
        alternatives = _alternatives(match.group(1), pattern)
        if len(paths) * len(alternatives) > MAX_EXPANSION:
            raise SSLKitError(f"shard pattern {pattern!r} names more than {MAX_EXPANSION:,} files")
        head = rest[: match.start()]
        paths = [p + head + a for p in paths for a in alternatives]
        rest = rest[match.end() :]


def expand_shards(patterns: str) -> list[str]:
    """The sorted absolute paths of the files ``patterns`` (whitespace-separated) name.

    Raises :class:`~sslkit.errors.SSLKitError` naming the pattern when a pattern matches no
    file, or when brace-named files (without wildcards) are missing.
    """
    found: set[str] = set()
    for pattern in patterns.split():
        expanded = [os.path.abspath(os.path.expanduser(p)) for p in expand_braces(pattern)]
        matched: list[str] = []
        missing: list[str] = []
        for path in expanded:
            if glob.has_magic(path):
                matched += [p for p in glob.glob(path) if os.path.isfile(p)]
            elif os.path.isfile(path):
                matched.append(path)
            else:
                missing.append(path)
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise SSLKitError(f"shard pattern {pattern!r}: {len(missing)} of the {len(expanded)} files it names do "
                              f"not exist: {shown}")
        if not matched:
            folder = os.path.dirname(expanded[0])
            near = sorted(os.listdir(folder))[:5] if os.path.isdir(folder) else []
            what = f"{folder} holds {', '.join(near)}" if near else f"{folder} is empty or missing"
            raise SSLKitError(f"shard pattern {pattern!r} matches no file ({what})")
        found.update(matched)
    if not found:
        raise SSLKitError("shard pattern is empty: give a path like 'shards/train-{000000..000099}.tar'")
    return sorted(found)
