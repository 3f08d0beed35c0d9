"""The closed transform vocabulary: names, argument checking, and read/write functions.

A transform step in a mapping file is a name (``strip``) or a one-key mapping whose value is the
argument (``{truncate: 255}``). :func:`build_step` checks the argument once and returns a
:class:`Step` holding the function to run when reading (remote → hub) and when writing
(hub → remote). Normalisers do the same both ways; conversions parse when reading and format
when writing; ``split_name`` and ``coalesce`` only read, ``join`` and ``template`` only write.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refsync.mapping import transforms as t
from refsync.mapping.paths import path_getter

__all__ = ["TRANSFORM_NAMES", "Step", "TransformArgumentError", "build_step"]


class TransformArgumentError(ValueError):
    """A transform's argument is missing or wrong; ``fix`` says what to write instead."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass(frozen=True, slots=True)
class Step:
    """One compiled transform step.

    Attributes:
        name: the transform's name.
        read: applied when reading (remote → hub), or ``None`` when the step does not read.
        write: applied when writing (hub → remote), or ``None`` when the step does not write.
        read_uses_record: ``read`` takes ``(value, remote_record)`` instead of ``(value)``.
        write_uses_record: ``write`` takes ``(value, get_canonical)`` instead of ``(value)``.
        kind: the type of value the step produces when reading, for conversions.
        canonical_fields: canonical fields the step reads (``join``, ``template``).
        remote_fields: other remote fields the step reads (``coalesce``).
    """

    name: str
    read: Callable[..., Any] | None
    write: Callable[..., Any] | None
    read_uses_record: bool = False
    write_uses_record: bool = False
    kind: str | None = None
    canonical_fields: tuple[str, ...] = ()
    remote_fields: tuple[str, ...] = ()


_NO_ARG: Any = object()


def _no_argument(name: str, arg: Any) -> None:
    if arg is not _NO_ARG and arg is not None:
        raise TransformArgumentError(f"{name} takes no argument", f"write just '{name}'")


def _both(name: str, fn: Callable[[Any], Any], kind: str | None = None) -> Callable[[Any], Step]:
    def build(arg: Any) -> Step:
        _no_argument(name, arg)
        return Step(name, fn, fn, kind=kind)

    return build


def _truncate(arg: Any) -> Step:
    if isinstance(arg, str):
        number = arg.strip()
        example = number if number.isascii() and number.isdigit() and int(number) > 0 else "255"
        raise TransformArgumentError(f"truncate takes a number, not the text {arg!r}",
                                     f"write {{truncate: {example}}}")
    if isinstance(arg, bool) or not isinstance(arg, int) or arg < 1:
        raise TransformArgumentError("truncate needs a positive length", "write {truncate: 255}")
    fn = t.truncate(arg)
    return Step("truncate", fn, fn)


def _default(arg: Any) -> Step:
    if arg is _NO_ARG or isinstance(arg, (dict, list)):
        raise TransformArgumentError("default needs a value", "write {default: \"(unknown)\"}")
    fn = t.default(arg)
    return Step("default", fn, fn)


def _split_name(arg: Any) -> Step:
    if arg not in ("first", "last"):
        raise TransformArgumentError(
            "split_name needs the part to take: first or last", "write {split_name: first}"
        )
    return Step("split_name", t.split_name(arg), None)


def _field_names(value: Any) -> list[str] | None:
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    return None


def _join(arg: Any) -> Step:
    separator = " "
    fields = _field_names(arg)
    if isinstance(arg, dict) and set(arg) <= {"fields", "separator"}:
        fields = _field_names(arg.get("fields"))
        separator = arg.get("separator", " ")
    if fields is None or not isinstance(separator, str):
        raise TransformArgumentError(
            "join needs a list of canonical fields (and optionally a separator)",
            "write {join: [first_name, last_name]} or "
            "{join: {fields: [first_name, last_name], separator: \" \"}}",
        )
    return Step("join", None, t.join(fields, separator), write_uses_record=True,
                canonical_fields=tuple(fields))


def _template(arg: Any) -> Step:
    if not isinstance(arg, str) or not arg:
        raise TransformArgumentError(
            "template needs text with {field} placeholders",
            "write {template: \"{first_name} {last_name}\"}",
        )
    try:
        parts = t.parse_template(arg)
    except ValueError as exc:
        raise TransformArgumentError(
            f"template: {exc}", "use {field} for a field and {{ or }} for a literal brace"
        ) from None
    names = tuple(name for _, name in parts if name is not None)
    return Step("template", None, t.template(parts), write_uses_record=True,
                canonical_fields=names)


def _date_style(name: str, arg: Any) -> str:
    if arg is _NO_ARG or arg is None:
        return "iso"
    if arg in ("iso", "epoch_ms"):
        return str(arg)
    raise TransformArgumentError(
        f"{name} takes an optional format: iso or epoch_ms",
        f"write '{name}' or {{{name}: epoch_ms}}",
    )


def _date(arg: Any) -> Step:
    return Step("date", t.date_reader, t.date_writer(_date_style("date", arg)), kind="date")


def _datetime(arg: Any) -> Step:
    return Step("datetime", t.datetime_reader, t.datetime_writer(_date_style("datetime", arg)),
                kind="datetime")


def _phone(arg: Any) -> Step:
    code: str | None = None
    if arg is not _NO_ARG and arg is not None:
        text = str(arg).lstrip("+") if isinstance(arg, (int, str)) and not isinstance(arg, bool) \
            else ""
        if not (text.isdigit() and 1 <= len(text) <= 3 and not text.startswith("0")):
            raise TransformArgumentError(
                "phone takes an optional default country calling code (1 to 3 digits)",
                "write 'phone' or {phone: 1} (US/Canada), {phone: 44} (UK)",
            )
        code = text
    fn = t.phone(code)
    return Step("phone", fn, fn)


def _coalesce(arg: Any) -> Step:
    paths = _field_names(arg)
    if paths is None:
        raise TransformArgumentError(
            "coalesce needs a list of other remote fields to try when the value is blank",
            "write {coalesce: [MobilePhone, OtherPhone]}",
        )
    return Step("coalesce", t.coalesce([path_getter(p) for p in paths]), None,
                read_uses_record=True, remote_fields=tuple(paths))


def _regex_replace(arg: Any) -> Step:
    fix = "write {regex_replace: {pattern: \"\\\\s+\", replace: \" \"}}"
    if not isinstance(arg, dict) or not set(arg) <= {"pattern", "replace"} or "pattern" not in arg:
        raise TransformArgumentError("regex_replace needs pattern (and optionally replace)", fix)
    pattern, replacement = arg["pattern"], arg.get("replace", "")
    if not isinstance(pattern, str) or not isinstance(replacement, str):
        raise TransformArgumentError("regex_replace pattern and replace must be text", fix)
    try:
        compiled = re.compile(pattern)
        compiled.sub(replacement, "")  # checks group references in the replacement now
    except re.error as exc:
        raise TransformArgumentError(f"regex_replace: invalid regular expression: {exc}", fix) \
            from None
    fn = t.regex_replace(compiled, replacement)
    return Step("regex_replace", fn, fn)


_BUILDERS: dict[str, Callable[[Any], Step]] = {
    "strip": _both("strip", t.strip),
    "lower": _both("lower", t.lower),
    "upper": _both("upper", t.upper),
    "title": _both("title", t.title),
    "truncate": _truncate,
    "default": _default,
    "split_name": _split_name,
    "join": _join,
    "template": _template,
    "to_decimal": lambda arg: _with_writer(_both("to_decimal", t.to_decimal, "decimal")(arg),
                                           t.decimal_writer),
    "to_int": _both("to_int", t.to_int, "int"),
    "to_bool": _both("to_bool", t.to_bool, "bool"),
    "date": _date,
    "datetime": _datetime,
    "email": _both("email", t.email),
    "phone": _phone,
    "domain_from_email": _both("domain_from_email", t.domain_from_email),
    "domain_from_url": _both("domain_from_url", t.domain_from_url),
    "coalesce": _coalesce,
    "regex_replace": _regex_replace,
}

TRANSFORM_NAMES: frozenset[str] = frozenset(_BUILDERS)
"""Every transform a mapping may name (value maps are written with the field's ``values:``)."""


def _with_writer(step: Step, writer: Callable[[Any], Any]) -> Step:
    return Step(step.name, step.read, writer, kind=step.kind)


def build_step(spec: Any) -> Step:
    """Build a step from how it is written in the file (``"strip"`` or ``{"truncate": 255}``).

    Raises:
        KeyError: the transform name is not in the vocabulary (the key is the name).
        TransformArgumentError: the step is malformed or its argument is wrong.
    """
    if isinstance(spec, str):
        name, arg = spec, _NO_ARG
    elif isinstance(spec, dict) and len(spec) == 1:
        ((name, arg),) = spec.items()
        name = str(name)
    else:
        raise TransformArgumentError(
            "a transform is a name or a one-key mapping", "write e.g. strip or {truncate: 255}"
        )
    builder = _BUILDERS.get(name)
    if builder is None:
        raise KeyError(name)
    return builder(arg)
