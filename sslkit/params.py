"""Typed, documented parameter schemas for components and recipes.

A schema is a dataclass whose fields are declared with :func:`param`: a default, a docstring
and optional bounds or choices. :func:`validate` turns a plain mapping (from YAML) into an
instance, collecting every problem (unknown key with a close match, wrong type, out of range)
instead of stopping at the first.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin, overload

from sslkit.errors import Problem, suggest

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")
Locate = Callable[[str], str | None]

_MISSING = dataclasses.MISSING


def param(
    default: Any = _MISSING,
    doc: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare a schema field with its documentation and numeric bounds.

    ``default_factory`` is for mutable defaults (lists, nested schemas). A field with neither
    default is required.
    """
    metadata = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_doc(f: dataclasses.Field[Any]) -> str:
    """The documentation string of a schema field ('' when undocumented)."""
    return str(f.metadata.get("doc", ""))


def type_name(tp: Any) -> str:
    """A readable name for a type annotation, as used in error messages and the reference."""
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"list of {type_name(args[0])}"
        if origin is tuple:
            return f"list of {len(args)} ({', '.join(type_name(a) for a in args)})"
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, locate: Locate, problems: list[Problem]) -> Any:
    origin = get_origin(tp)
    bad = object()

    def fail(expected: str) -> Any:
        problems.append(Problem(key, f"expected {expected}, got {value!r} ({type(value).__name__})", locate(key)))
        return bad

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[Problem] = []
            result = _coerce(value, arg, key, locate, trial)
            if not trial:
                return result
        return fail(type_name(tp))
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        hint = suggest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        problems.append(Problem(key, f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}",
                                locate(key)))
        return bad
    if tp is bool:
        return value if isinstance(value, bool) else fail("a boolean (true/false)")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return fail("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return fail("a number")
        return float(value)
    if tp is str:
        return value if isinstance(value, str) else fail("a string")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return fail(type_name(tp))
        args = get_args(tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                return fail(type_name(tp))
            pairs = enumerate(zip(value, args, strict=True))
            items = [_coerce(v, a, f"{key}[{i}]", locate, problems) for i, (v, a) in pairs]
            return tuple(items)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]", locate, problems) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            return fail("a mapping")
        _, val_tp = get_args(tp) or (str, Any)
        return {k: _coerce(v, val_tp, f"{key}.{k}", locate, problems) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            return fail("a mapping")
        return validate(tp, value, prefix=key, locate=locate, problems=problems)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    return fail(type_name(tp))


_BOUNDS: tuple[tuple[str, Callable[[float, float], bool], str], ...] = (
    ("ge", operator.ge, ">="), ("gt", operator.gt, ">"), ("le", operator.le, "<="), ("lt", operator.lt, "<"))


def _check_bounds(
    value: Any, f: dataclasses.Field[Any], key: str, locate: Locate, problems: list[Problem]
) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    md = f.metadata
    for name, ok, sym in _BOUNDS:
        bound = md.get(name)
        if bound is not None and not ok(value, bound):
            problems.append(Problem(key, f"must be {sym} {bound}, got {value!r}", locate(key)))


@overload
def validate(
    schema: type[T],
    values: Mapping[str, Any] | None,
    *,
    prefix: str = "",
    locate: Locate | None = None,
    problems: None = None,
    reserved: tuple[str, ...] = (),
) -> T: ...


@overload
def validate(
    schema: type[T],
    values: Mapping[str, Any] | None,
    *,
    prefix: str = "",
    locate: Locate | None = None,
    problems: list[Problem],
    reserved: tuple[str, ...] = (),
) -> T | None: ...


def validate(
    schema: type[T],
    values: Mapping[str, Any] | None,
    *,
    prefix: str = "",
    locate: Locate | None = None,
    problems: list[Problem] | None = None,
    reserved: tuple[str, ...] = (),
) -> T | None:
    """Build ``schema`` from ``values``; raise :class:`sslkit.errors.RecipeError` on problems.

    When ``problems`` is given, problems are appended to it instead of raised (the caller
    collects them across a whole recipe) and the result is ``None`` if any were found.
    ``reserved`` names keys that the caller handles itself and removed from ``values`` (e.g.
    ``name`` and ``weight`` of a loss entry): they are listed, and suggested, as allowed keys in
    the message about an unknown key.
    """
    from sslkit.errors import RecipeError

    own = problems is None
    problems = [] if problems is None else problems
    start = len(problems)
    locate = locate or (lambda _key: None)
    values = dict(values or {})
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    join = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    allowed = sorted({*fields, *reserved})
    for unknown in sorted(set(values) - set(fields)):
        key = join(unknown)
        problems.append(Problem(key, f"unknown key{suggest(unknown, allowed)}; allowed: {', '.join(allowed)}",
                                locate(key)))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = join(name)
        if name not in values:
            if f.default is _MISSING and f.default_factory is _MISSING:
                problems.append(Problem(key, f"required ({type_name(hints[name])}): {field_doc(f)}", locate(key)))
            continue
        before = len(problems)
        value = _coerce(values[name], hints[name], key, locate, problems)
        if len(problems) == before:
            _check_bounds(value, f, key, locate, problems)
            kwargs[name] = value
    if len(problems) > start:
        if own:
            raise RecipeError(problems)
        return None
    return schema(**kwargs)


def to_dict(instance: DataclassInstance) -> dict[str, Any]:
    """A schema instance as plain data (tuples become lists), suitable for YAML."""

    def plain(v: object) -> object:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return to_dict(v)
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(instance, f.name)) for f in dataclasses.fields(instance)}
