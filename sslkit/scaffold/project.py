"""Templates shared by every kind of scaffolded plugin: packaging, registration, README.

Templates use :class:`string.Template` placeholders (``$name``, ``$dist``, ``$package``,
``$module``, ``$cls``, ``$kind``, ``$hook``, ``$summary``, ``$summary_quoted`` (the summary as a
quoted TOML/Python string), ``$sslkit_version``), so that the Python code in them keeps its braces.
"""

from __future__ import annotations

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = $summary_quoted
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["sslkit>=$sslkit_version"]

[project.optional-dependencies]
test = ["pytest>=8"]

# sslkit discovers plugins through the "sslkit" entry-point group: the value is the module
# that implements the registration hook (see $package/__init__.py).
[project.entry-points.sslkit]
$name = "$package"

[tool.setuptools]
packages = ["$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

INIT = '''\
"""$dist: the sslkit $kind ``$name``.

Installing this distribution registers the component through the ``sslkit`` entry point
declared in pyproject.toml; ``sslkit plugins --kind $kind`` lists it.
"""

from collections.abc import Callable

import sslkit

from $package.$module import $cls, ${cls}Params

__all__ = ["$cls", "${cls}Params", "$hook"]


@sslkit.hookimpl
def $hook(register: Callable[..., None]) -> None:
    """Register the $kind ``$name`` (factory, parameter schema, one-line summary)."""
    register(
        "$name",
        $cls,
        ${cls}Params,
        summary=$summary_quoted,
    )
'''

README = '''\
# $dist

$summary

An sslkit plugin: a $kind named `$name`, registered through the
`sslkit` entry-point group.

`$package/$module.py` starts as sslkit's working example of a $kind, with its tests in
`tests/test_${name}_$kind.py`: replace its computation with yours (and the tests with tests of
your formula), then this summary (in `pyproject.toml` and `$package/__init__.py`).

## Install and test

```bash
pip install -e .            # into the environment that has sslkit
pytest                      # the tests use sslkit's plugin test kit (sslkit.testing)
sslkit plugins --kind $kind # lists $name with this distribution as its provider
```

## Train with it

`recipes/${name}_tiny.yaml` is a self-contained CPU recipe (procedural images, ViT-tiny, 50 steps):

```bash
sslkit train recipes/${name}_tiny.yaml --output-dir runs/${name}_tiny
```

## Use it in a recipe

$usage

Every parameter is validated against `${cls}Params` (in `$package/$module.py`): a typo or
a value out of range is reported with the recipe's file and line before training starts.

## Publish

```bash
python -m pip install build twine
python -m build             # dist/$package-0.1.0.tar.gz and the wheel
twine upload dist/*
```

Users then `pip install $dist` and the component is available to every recipe.
'''
