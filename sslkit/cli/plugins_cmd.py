"""``sslkit plugins``: the registered components, their providers, and any plugin failures."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sslkit.registry import KINDS, conflict_message, get_registry


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plugins", help="list registered components with their providers",
                       description="List registered components (all kinds, or one), with the distribution "
                                   "and module that provide each, plugin load failures and name conflicts.")
    p.add_argument("pattern", nargs="?", default="*", help="wildcard on component names, e.g. '*bot*'")
    p.add_argument("--kind", choices=KINDS, help="only this component kind")
    p.add_argument("--json", action="store_true", help="print a JSON list of {kind, name, provider, summary, ...}")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    registry = get_registry()
    components = registry.list(args.kind, args.pattern)
    conflicts = [conflict_message(k, n, p) for (k, n), p in registry.conflicts.items()
                 if args.kind in (None, k)]
    if args.json:
        rows = [{"kind": c.kind, "name": c.name, "provider": c.provider.distribution,
                 "provider_version": c.provider.version, "module": c.provider.module, "summary": c.summary}
                for c in components]
        rows += [{"kind": "failure", "name": f.entry_point, "provider": f.provider, "summary": f.error}
                 for f in registry.failures]
        rows += [{"kind": "conflict", "name": f"{k}:{n}", "provider": ", ".join(str(x) for x in p),
                  "summary": conflict_message(k, n, p)} for (k, n), p in registry.conflicts.items()]
        print(json.dumps(rows, indent=2))
    else:
        width = max((len(c.name) for c in components), default=4)
        current = None
        for c in components:
            if c.kind != current:
                current = c.kind
                print(f"\n{c.kind}:")
            print(f"  {c.name:<{width}}  {c.summary}  [{c.provider.distribution} {c.provider.version}: "
                  f"{c.provider.module}]")
        if not components:
            print("no matching components")
        for failure in registry.failures:
            print(f"\nFAILED {failure}", file=sys.stderr)
        for message in conflicts:
            print(f"\nCONFLICT {message}", file=sys.stderr)
    return 1 if conflicts else 0
