"""One parser for string options (``--engine-option KEY=VALUE``, ``overseer.<name>``): text in, dataclass out.

A settings dataclass declares each option once, as a field made by :func:`opt`: its type
comes from the annotation (``int``, ``float``, ``bool``, ``str``, ``Path``, a ``Literal``
of strings, any of them ``| None``), its constraint and help text from ``opt``'s
arguments. :func:`parse_options` turns a string map into an instance (unknown keys,
malformed and out-of-range values are refused with a message naming the owner, the
option, the text given and what is allowed), :func:`option_help` derives the help table
and :func:`check_values` enforces the same constraints on an instance built directly
(call it from ``__post_init__``). Rules that involve several fields stay in the
dataclass's own ``__post_init__``.

Kept free of heavy imports: a bare install (no torch) parses the flow engine's options.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")

_METADATA_KEY = "tracker.option"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """What :func:`opt` records in a field's metadata."""

    help: str = ""
    choices: tuple[str, ...] | None = None
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)  # alias -> one of choices
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    exclusive_maximum: float | None = None
    multiple_of: int | None = None
    parse: Callable[[str], Any] | None = None  # custom conversion; raises ValueError("<why>")
    allowed: str | None = None  # what is allowed, in words, where it cannot be derived (custom parse)
    none: tuple[str, ...] = ("",)  # texts that mean None for an optional field (case-insensitive)


def opt(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",
    choices: tuple[str, ...] | None = None,
    aliases: Mapping[str, str] | None = None,
    minimum: float | None = None,
    exclusive_minimum: float | None = None,
    maximum: float | None = None,
    exclusive_maximum: float | None = None,
    multiple_of: int | None = None,
    parse: Callable[[str], Any] | None = None,
    allowed: str | None = None,
    none: tuple[str, ...] = ("",),
) -> Any:
    """A dataclass field that is a string option; no ``default``: the option is required.

    ``choices`` (or a ``Literal`` annotation) lists the canonical values, ``aliases`` maps
    other accepted spellings onto them; the bounds apply to int and float options;
    ``parse`` replaces the conversion (it raises ValueError whose text says why, e.g.
    ``"names a provider twice"``) and then ``allowed`` says in words what is accepted.
    """
    spec = OptionSpec(
        help=help,
        choices=tuple(choices) if choices is not None else None,
        aliases=dict(aliases or {}),
        minimum=minimum,
        exclusive_minimum=exclusive_minimum,
        maximum=maximum,
        exclusive_maximum=exclusive_maximum,
        multiple_of=multiple_of,
        parse=parse,
        allowed=allowed,
        none=tuple(w.lower() for w in none),
    )
    if spec.parse is not None and spec.allowed is None:
        raise TypeError("an option with a custom parse needs allowed= (what it accepts, in words)")
    if isinstance(default, list | dict | set):
        raise TypeError("a mutable option default would be shared; use a tuple or a frozen value")
    return dataclasses.field(default=default, metadata={_METADATA_KEY: spec})


@dataclasses.dataclass(frozen=True)
class _Option:
    """One field of a settings class, resolved: its kind, constraint and help."""

    name: str
    kind: type  # bool, int, float, str or Path (str for choices); object for a custom parse
    optional: bool
    required: bool
    spec: OptionSpec
    choices: tuple[str, ...] | None
    allowed: str  # the help text: what is allowed, then the field's own help


def _resolve_type(cls: type, name: str, annotation: Any) -> tuple[type, bool, tuple[str, ...] | None]:
    """(kind, optional, choices from a Literal) of one field's annotation."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(args) != 2:
            raise TypeError(f"{cls.__name__}.{name}: an option is one type, optionally | None")
        optional, annotation = True, rest[0]
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
        if not all(isinstance(v, str) for v in values):
            raise TypeError(f"{cls.__name__}.{name}: a Literal option takes strings only")
        return str, optional, values
    return annotation, optional, None


def _numbers(x: float) -> str:
    return f"{x:g}"


def _range_words(spec: OptionSpec) -> str:
    lo = spec.minimum if spec.minimum is not None else spec.exclusive_minimum
    hi = spec.maximum if spec.maximum is not None else spec.exclusive_maximum
    if lo is not None and hi is not None:
        left = "[" if spec.minimum is not None else "("
        right = "]" if spec.maximum is not None else ")"
        return f" in {left}{_numbers(lo)}, {_numbers(hi)}{right}"
    if lo is not None:
        return f" {'>=' if spec.minimum is not None else '>'} {_numbers(lo)}"
    if hi is not None:
        return f" {'<=' if spec.maximum is not None else '<'} {_numbers(hi)}"
    return ""


def _allowed_words(kind: type, optional: bool, choices: tuple[str, ...] | None, spec: OptionSpec) -> str:
    if spec.allowed is not None:
        words = spec.allowed
    elif choices is not None:
        words = " | ".join(choices)
        if spec.aliases:
            words += f" (or {' | '.join(spec.aliases)})"
    elif kind is bool:
        words = "true | false"
    elif kind in (int, float):
        noun = "an integer" if kind is int else "a number"
        if spec.multiple_of is not None:
            noun = f"a multiple of {spec.multiple_of}"
        words = noun + _range_words(spec)
    elif kind is Path:
        words = "a path"
    else:
        words = "text"
    spoken_none = [w for w in spec.none if w]
    if optional and spoken_none:
        words += f", or {spoken_none[0]}"
    if words == "text" and spec.help:
        return spec.help  # free text: the help says what it is
    return f"{words} ({spec.help})" if spec.help else words


@functools.cache
def _table(cls: type) -> dict[str, _Option]:
    """The options of ``cls`` (fields made by :func:`opt`), in field order; computed once per class."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = get_type_hints(cls)
    table: dict[str, _Option] = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_METADATA_KEY)
        if spec is None or not f.init:
            continue
        kind, optional, choices = _resolve_type(cls, f.name, hints[f.name])
        if spec.choices is not None:
            if choices is not None and set(spec.choices) != set(choices):
                raise TypeError(f"{cls.__name__}.{f.name}: choices= disagrees with the Literal annotation")
            choices = spec.choices
        if spec.parse is not None:
            kind = object
        elif choices is None and kind not in (bool, int, float, str, Path):
            raise TypeError(f"{cls.__name__}.{f.name}: {kind!r} options need parse=")
        if spec.aliases and (choices is None or not set(spec.aliases.values()) <= set(choices)):
            raise TypeError(f"{cls.__name__}.{f.name}: aliases must map onto the choices")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        allowed = _allowed_words(kind, optional, choices, spec)
        table[f.name] = _Option(f.name, kind, optional, required, spec, choices, allowed)
    return table


def option_help(cls: type) -> dict[str, str]:
    """Option name -> what it accepts and what it does (the help table of a settings class)."""
    return {name: o.allowed for name, o in _table(cls).items()}


def _to_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        value = float(text)  # "512.0" is an integer too; "1.5" and "x" are not
        if not math.isfinite(value) or value != int(value):
            raise ValueError(text) from None
        return int(value)


def _violation(o: _Option, value: Any) -> str | None:
    """Why ``value`` breaks the option's constraint, or None when it keeps it."""
    if value is None:
        return None if o.optional else "is missing"
    if o.choices is not None:
        return None if value in o.choices else "is not allowed"
    if o.kind in (int, float) and not isinstance(value, bool):
        s = o.spec
        if not math.isfinite(value):
            return "is not a finite number"
        if (
            (s.minimum is not None and value < s.minimum)
            or (s.exclusive_minimum is not None and value <= s.exclusive_minimum)
            or (s.maximum is not None and value > s.maximum)
            or (s.exclusive_maximum is not None and value >= s.exclusive_maximum)
            or (s.multiple_of is not None and value % s.multiple_of)
        ):
            return "is out of range"
    return None


def _convert(o: _Option, text: str, owner: str) -> Any:
    def bad(why: str) -> ValueError:
        return ValueError(f"{owner} option {o.name}={text!r} {why}; allowed: {o.allowed}")

    if not isinstance(text, str):
        raise bad(f"is a {type(text).__name__}, not text")
    stripped = text.strip()
    if o.optional and stripped.lower() in o.spec.none:
        return None
    if o.spec.parse is not None:
        try:
            return o.spec.parse(stripped)
        except ValueError as exc:
            raise bad(str(exc)) from None
    value: Any
    if o.choices is not None:
        word = stripped.lower()
        value = o.spec.aliases.get(word, word)
    elif o.kind is bool:
        word = stripped.lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise bad("is not a boolean")
        value = word in TRUE_WORDS
    elif o.kind is int:
        try:
            value = _to_int(stripped)
        except ValueError:
            raise bad("is not an integer") from None
    elif o.kind is float:
        try:
            value = float(stripped)
        except ValueError:
            raise bad("is not a number") from None
    else:
        if not stripped:
            raise bad("is empty")
        value = Path(stripped) if o.kind is Path else stripped
    why = _violation(o, value)
    if why is not None:
        raise bad(why)
    return value


def parse_options(cls: type[T], options: Mapping[str, str], *, owner: str, base: T | None = None) -> T:
    """An instance of the settings dataclass ``cls`` from string ``options``.

    Options not given keep ``base``'s values (default: the field defaults); fields that
    are not options always take their defaults. ``owner`` names whose options these are
    in every message (``"flow engine"``, ``"overseer"``). Raises ValueError naming an
    unknown key (and the known ones), a malformed or out-of-range value (and what is
    allowed), a missing required option, or a rule of ``cls.__post_init__``.
    """
    table = _table(cls)
    unknown = sorted(set(options) - set(table))
    if unknown:
        raise ValueError(f"unknown {owner} option(s) {', '.join(unknown)}; known: {', '.join(sorted(table))}")
    values: dict[str, Any] = {}
    for name, o in table.items():
        if name in options:
            values[name] = _convert(o, options[name], owner)
        elif base is not None:
            values[name] = getattr(base, name)
        elif o.required:
            raise ValueError(f"{owner} needs option {name}; allowed: {o.allowed}")
    return cls(**values)


def check_values(instance: Any, *, owner: str) -> None:
    """Enforce the options' constraints on an instance however it was built (from ``__post_init__``)."""
    for name, o in _table(type(instance)).items():
        value = getattr(instance, name)
        why = None if o.spec.parse is not None else _violation(o, value)
        if why is not None:
            raise ValueError(f"{owner} option {name}={value!r} {why}; allowed: {o.allowed}")


__all__ = ["FALSE_WORDS", "TRUE_WORDS", "OptionSpec", "check_values", "opt", "option_help", "parse_options"]
