"""sslkit: a modular self-supervised learning toolkit for vision.

The core (this package) runs one generic student-teacher loop; every method-specific
component is a pluggy plugin registered through the ``sslkit`` entry-point group.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Decorator that marks a plugin module's hook implementations (``@sslkit.hookimpl``).
hookimpl = pluggy.HookimplMarker("sslkit")

__all__ = ["__version__", "hookimpl"]
