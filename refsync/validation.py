"""Pydantic's validation errors as problems a person editing the YAML can act on.

:func:`validate_model` checks loaded YAML against a model and reports every problem at once;
:func:`problems_from_validation` turns each pydantic error into a :class:`~refsync.errors.Problem`
at the file, line and column of the value, saying in plain words what the setting takes, what it
holds and how to fix it: pydantic's own wording ("Input should be a valid dictionary") never
reaches the person editing the file.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from refsync.errors import ConfigError, Problem
from refsync.yamlsource import LoadedYaml, Path_, SourceMap, did_you_mean, yaml_text

__all__ = [
    "MAX_SHOWN",
    "InvalidValueError",
    "explain_pattern",
    "path_exists",
    "problems_from_validation",
    "shortened",
    "validate_model",
]

M = typing.TypeVar("M", bound=BaseModel)

MAX_SHOWN = 200
"""The most characters of a value a message echoes: a longer one (a key pasted where its path
belongs) is not echoed, or only shortened."""


def path_exists(path: Path) -> bool:
    """Whether ``path`` exists. A name the system cannot even look up (longer than a file name
    may be, say: text pasted where a path belongs) does not, rather than raising ``OSError``."""
    try:
        return path.exists()
    except OSError:
        return False


class InvalidValueError(ValueError):
    """A validator's refusal of a value, with the fix to report beside it.

    Raised in a pydantic validator, it becomes a Problem saying ``message`` with ``fix`` as the
    fix. (From a plain ``ValueError`` only the message is known, unless it says what to do
    after a colon, as in "is empty: give the URL".)
    """

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


_PATTERNS: dict[str, tuple[str, str]] = {}
"""What each explained ``pattern`` stands for, and the fix for a value that does not match."""


def explain_pattern(pattern: str, expected: str, fix: str) -> str:
    """Say in words what a field's ``pattern`` takes; returns the pattern, for ``Field()``.

    A value that does not match is then reported as "must be <expected>" with ``fix``, instead
    of quoting the regular expression::

        every: str = Field(pattern=explain_pattern(r"^\\d+s$", "seconds such as 30s",
                                                   "write a whole number and s"))
    """
    _PATTERNS[pattern] = (expected, fix)
    return pattern


def validate_model(
    model: type[M], loaded: LoadedYaml, *, context: dict[str, Any] | None = None
) -> M:
    """Validate ``loaded.data`` against ``model``; raise ConfigError with every problem at once.

    Problems found while loading (missing variables, duplicate keys) are reported together with
    the validation errors; the same problem is reported once.
    """
    problems = list(loaded.problems)
    result: M | None = None
    try:
        result = model.model_validate(loaded.data, context=context)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, loaded.source, model))
    if problems or result is None:
        # a block shared with an alias or merge key is validated at each use: report it once
        problems = sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.column))
        raise ConfigError(problems)
    return result


def problems_from_validation(
    error: ValidationError, source: SourceMap, model: type[BaseModel] | None = None
) -> list[Problem]:
    """Translate every pydantic error into a Problem pointing into the YAML source.

    Each says in plain words what the setting takes and what it holds, with a fix: pydantic's
    own wording ("Input should be a valid dictionary") never reaches the person editing the
    file. A value that fits none of the types a union allows (``str | dict``) is one problem.
    """
    return [_problem_of(loc, items, source, model)
            for loc, items in _by_value(error.errors(include_url=False), model)]


def _by_value(
    errors: list[ErrorDetails], model: type[BaseModel] | None
) -> list[tuple[Path_, list[ErrorDetails]]]:
    """The errors grouped by the value they are about: one group per union a value misses."""
    groups: dict[Path_, list[ErrorDetails]] = {}
    grouped: list[tuple[Path_, list[ErrorDetails]]] = []
    for item in errors:
        loc = tuple(item["loc"])
        if model is None or item["type"] not in _EXPECTED or not _is_union_member(model, loc):
            grouped.append((loc, [item]))
            continue
        loc = loc[:-1]  # pydantic names the union's member last: the value is its parent
        if loc not in groups:
            groups[loc] = []
            grouped.append((loc, groups[loc]))
        groups[loc].append(item)
    return grouped


def _problem_of(
    loc: Path_, items: list[ErrorDetails], source: SourceMap, model: type[BaseModel] | None
) -> Problem:
    item = items[0]
    kind = item["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        allowed = _allowed_keys(model, loc[:-1]) if model else []
        guess = did_you_mean(name, allowed)
        fix = f"did you mean '{guess}'?" if guess else (
            f"remove it; allowed keys here: {', '.join(sorted(allowed))}" if allowed
            else "remove it"
        )
        return source.problem(loc, f"unknown key '{name}'", fix, key=True)
    if kind == "missing":
        return source.problem(loc[:-1], f"'{loc[-1]}' is required here", f"add '{loc[-1]}:'")
    if len(items) > 1:
        expected = " or ".join(dict.fromkeys(_EXPECTED[each["type"]] for each in items))
        return source.problem(
            loc, f"{_subject(loc)} must be {expected}, {_found(item.get('input'))}",
            f"write {expected}")
    message, fix = _explained(item, loc, source, model)
    return source.problem(loc, message, fix)


_MAPPING = "a mapping (key: value)"
_LIST = "a list"
_TEXT = "text"
_WHOLE_NUMBER = "a whole number"
_NUMBER = "a number"
_BOOLEAN = "true or false"
_EXPECTED = {
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type", "mapping_type"),
                    _MAPPING),
    **dict.fromkeys(("list_type", "tuple_type", "set_type", "frozen_set_type", "iterable_type"),
                    _LIST),
    **dict.fromkeys(("string_type", "string_unicode", "bytes_type"), _TEXT),
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float", "int_parsing_size"),
                    _WHOLE_NUMBER),
    **dict.fromkeys(("float_type", "float_parsing", "decimal_type", "decimal_parsing",
                     "finite_number"), _NUMBER),
    **dict.fromkeys(("bool_type", "bool_parsing"), _BOOLEAN),
    "path_type": "the path of a file",
}
"""What a value must be, by the kind of pydantic error saying it is not."""

_BOUNDS = {"greater_than": ("gt", "more than"), "greater_than_equal": ("ge", "at least"),
           "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}
_LENGTHS = frozenset({"too_short", "too_long", "string_too_short", "string_too_long"})


def _explained(
    item: ErrorDetails, loc: Path_, source: SourceMap, model: type[BaseModel] | None
) -> tuple[str, str]:
    """What is wrong with one value, and the fix, in plain words."""
    kind, value = item["type"], item.get("input")
    ctx: dict[str, Any] = dict(item.get("ctx") or {})
    subject = _subject(loc)
    if kind in _EXPECTED:
        # text of a given form (a duration): say the form, not "text" and "quote it"
        explained = _PATTERNS.get(_pattern(model, loc)) if _EXPECTED[kind] == _TEXT else None
        if explained is not None:
            expected, fix = explained
            return f"{subject} must be {expected}, {_found(value)}", fix
        return (f"{subject} must be {_EXPECTED[kind]}, {_found(value)}",
                _type_fix(_EXPECTED[kind], value, loc, source, model))
    if kind in ("literal_error", "enum"):
        return _not_a_choice(subject, loc, value, ctx, model)
    if kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        limits = _bounds(model, loc) or {bound: ctx.get(bound)}
        return (f"{subject} must be {words} {_number(ctx.get(bound))}, {_found(value)}",
                f"give a value {_range(limits)}")
    if kind in _LENGTHS:
        return _wrong_length(kind, subject, value, ctx)
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        if pattern in _PATTERNS:
            expected, fix = _PATTERNS[pattern]
            return f"{subject} must be {expected}, {_found(value)}", fix
        return (f"{subject} has a form this setting does not take: {_shown(value) or value!r}",
                f"write it to match the pattern {pattern}")
    if kind in ("value_error", "assertion_error"):
        return _refused(subject if loc else "", value, ctx.get("error"), str(item["msg"]))
    return f"{subject}: {_plain(str(item['msg']))}", "correct the value"


def _type_fix(
    expected: str, value: Any, loc: Path_, source: SourceMap, model: type[BaseModel] | None
) -> str:
    """How to write a value of the ``expected`` type, given what was written instead."""
    if expected == _MAPPING:
        return _mapping_fix(value, loc, model)
    if expected == _LIST:
        if isinstance(value, (str, int, float, bool)):
            return f"write it as a list: [{yaml_text(value)}]"
        return "write each item on its own line starting with '- ' (or [a, b] on one line)"
    if expected == _TEXT:
        return _text_fix(value, loc, source)
    limits = _range(_bounds(model, loc))
    within = f" {limits}" if limits else ""
    if expected == _WHOLE_NUMBER:
        return f"write a whole number{within} (digits only, without quotes or units)"
    if expected == _NUMBER:
        return f"write a number{within}, such as 30 or 2.5, without quotes or units"
    if expected == _BOOLEAN:
        return "write true or false"
    return f"write {expected}"


def _mapping_fix(value: Any, loc: Path_, model: type[BaseModel] | None) -> str:
    """How to write a mapping where something else was written: its keys, when known."""
    if isinstance(value, list):
        under = ", indented under it" if loc else ""
        return f"write each entry as key: value{under}, not as a list ('- ' or [...])"
    keys = ", ".join(_allowed_keys(model, loc) if model else [])
    if not loc:
        return f"start the file with its settings: {keys}" if keys else "write key: value lines"
    return f"write its keys indented under it: {keys}" if keys else \
        "write key: value lines indented under it"


def _text_fix(value: Any, loc: Path_, source: SourceMap) -> str:
    """How to write text where YAML read a number, a boolean, a list or nothing."""
    if isinstance(value, (int, float, bool)):
        written = getattr(source, "retyped", {}).get(loc, yaml_text(value))
        return f'quote it to keep it as text: "{written}"'
    if isinstance(value, (dict, list)):
        return "write a single value, not a list or mapping"
    return "give it a value"


def _not_a_choice(
    subject: str, loc: Path_, value: Any, ctx: dict[str, Any], model: type[BaseModel] | None
) -> tuple[str, str]:
    """A value that is not one of those a setting allows."""
    choices = _literal_values(_annotation_at(model, loc)) if model else []
    if not choices:
        expected = str(ctx.get("expected", ""))
        choices = re.findall(r"'([^']*)'", expected) or [expected]
    if len(choices) == 1:
        return (f"{subject} must be {choices[0]}, {_found(value)}",
                f"write {loc[-1] if loc else subject}: {choices[0]}")
    listed = ", ".join(f"'{choice}'" for choice in choices[:-1]) + f" or '{choices[-1]}'"
    guess = did_you_mean(value, choices) if isinstance(value, str) else None
    return (f"{subject} must be one of {listed}, {_found(value)}",
            f"did you mean '{guess}'?" if guess else f"use one of: {', '.join(choices)}")


def _wrong_length(kind: str, subject: str, value: Any, ctx: dict[str, Any]) -> tuple[str, str]:
    """A list, mapping or text with too few or too many entries or characters."""
    least, most = ctx.get("min_length"), ctx.get("max_length")
    actual = ctx.get("actual_length")
    if kind == "string_too_short":
        if least == 1:
            return f"{subject} is empty", "give it a value"
        return (f"{subject} must be at least {least} characters long, {_found(value)}",
                f"write at least {least} characters")
    if kind == "string_too_long":
        return f"{subject} is longer than {most} characters", f"shorten it to {most} at most"
    if kind == "too_long":
        return (f"{subject} has {_entries_text(actual)}, more than the {most} it takes",
                f"keep at most {most}")
    needed = f"at least {_entries_text(least)}"
    if not actual:
        return (f"{subject} is empty, but it needs {needed}",
                "add an entry under it" if least == 1 else f"add {needed} under it")
    return (f"{subject} has {_entries_text(actual)}, but it needs {needed}",
            f"add entries under it: {needed}")


def _entries_text(count: Any) -> str:
    return "one entry" if count == 1 else f"{count} entries"


_FIX_AFTER_COLON = re.compile(
    r": (?=(?:add|change|choose|give|keep|make|move|put|quote|remove|rename|set|to|use|write) )")
"""Where a validator's message says what to do, as in "is empty: give the URL"."""
_PREDICATES = frozenset({"cannot", "has", "holds", "is", "must", "names", "needs", "takes"})
"""First words of a validator's message written to follow the setting's name ("is empty")."""


def _refused(subject: str, value: Any, error: Any, raw: str) -> tuple[str, str]:
    """A validator's refusal: its message, and its fix (given, or said after a colon)."""
    text = str(error) if error is not None else _plain(raw)
    fix = getattr(error, "fix", "")
    if not fix:
        match = _FIX_AFTER_COLON.search(text)
        if match is not None:
            text, fix = text[:match.start()], text[match.end():]
    if subject:
        joiner = " " if text.split(" ", 1)[0] in _PREDICATES else ": "
        text = f"{subject}{joiner}{text}"
    shown = _shown(value)
    if shown is not None and yaml_text(value) not in text:
        text += f" (got {shown})"
    return text, fix


def _plain(message: str) -> str:
    """A pydantic message without its "Value error, " lead, starting in lower case."""
    message = re.sub(r"^(Value error|Assertion failed), ", "", message)
    return message[:1].lower() + message[1:]


def _subject(loc: Path_) -> str:
    """The setting a problem is about, as a dotted path (``daemon.http_port``)."""
    return ".".join(str(part) for part in loc) or "the file"


def _found(value: Any) -> str:
    """What a value is, to follow "must be ...": ``not 'lots'``, ``not a list``."""
    if value is None or value == "":
        return "but it is empty"
    if isinstance(value, bool):
        return f"not {yaml_text(value)}"
    if isinstance(value, dict):
        return "not a mapping"
    if isinstance(value, (list, tuple)):
        return "not a list"
    shown = _shown(value)
    return f"not {shown}" if shown is not None else "not what is written here"


def shortened(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` as a message may echo it: whole up to ``limit`` characters, else its start and
    its end around ``...`` in ``limit`` characters (a path keeps its top and its file name)."""
    if len(text) <= limit:
        return text
    start = (limit - 3) // 2
    return f"{text[:start]}...{text[len(text) - (limit - 3 - start):]}"


def _shown(value: Any) -> str | None:
    """A scalar as it may be quoted in a message; ``None`` for anything long or many-lined
    (a key pasted where its path belongs must not be printed)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = str(value)
    if len(text) > MAX_SHOWN or "\n" in text:
        return None
    return f"'{text}'" if isinstance(value, str) else text


def _constraints(model: type[BaseModel] | None, loc: Path_) -> list[Any]:
    """The constraints (``Field(ge=..., pattern=...)``) the model sets on the field at ``loc``."""
    if model is None or not loc or not isinstance(loc[-1], str):
        return []
    parent = _as_model(_annotation_at(model, loc[:-1]))
    info = parent.model_fields.get(loc[-1]) if parent is not None else None
    return list(info.metadata) if info is not None else []


def _bounds(model: type[BaseModel] | None, loc: Path_) -> dict[str, Any]:
    """The ``gt``/``ge``/``lt``/``le`` limits of the field at ``loc``, as its model sets them."""
    limits: dict[str, Any] = {}
    for constraint in _constraints(model, loc):
        for name in ("gt", "ge", "lt", "le"):
            if getattr(constraint, name, None) is not None:
                limits[name] = getattr(constraint, name)
    return limits


def _pattern(model: type[BaseModel] | None, loc: Path_) -> str:
    """The ``pattern`` the field at ``loc`` must match, as its model sets it ("" for none)."""
    for constraint in _constraints(model, loc):
        if isinstance(getattr(constraint, "pattern", None), str):
            return str(constraint.pattern)
    return ""


def _range(limits: dict[str, Any]) -> str:
    """``from 1 to 10000``, ``of at least 1``, ``above 0``: the values limits allow."""
    if "ge" in limits and "le" in limits:
        return f"from {_number(limits['ge'])} to {_number(limits['le'])}"
    words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
    text = " and ".join(f"{words[name]} {_number(limits[name])}"
                        for name in words if name in limits)
    return f"of {text}" if text.startswith("at ") else text


def _number(value: Any) -> str:
    """A limit as a person writes it: ``0``, not ``0.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _annotation_at(model: type[BaseModel] | None, loc: Path_) -> Any:
    """The type a model declares for the value at ``loc``; ``None`` when it cannot tell."""
    annotation: Any = model
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    return annotation


def _is_union_member(model: type[BaseModel], loc: Path_) -> bool:
    """Whether the last part of ``loc`` names a member of a union, not a key."""
    if not loc or not isinstance(loc[-1], str):
        return False
    annotation = _annotation_at(model, loc[:-1])
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return False
    return len([arg for arg in typing.get_args(annotation) if arg is not type(None)]) > 1


def _literal_values(annotation: Any) -> list[str]:
    """The values a ``Literal`` or an ``Enum`` allows, as text (none for other types)."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [yaml_text(member.value) for member in annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return [yaml_text(arg) for arg in args]
    if origin in (typing.Union, types.UnionType):
        return [value for arg in args for value in _literal_values(arg)]
    if origin is typing.Annotated:
        return _literal_values(args[0])
    return []


def _allowed_keys(model: type[BaseModel] | None, loc: Sequence[str | int]) -> list[str]:
    annotation: Any = model
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    target = _as_model(annotation)
    if target is None:
        return []
    names = []
    for name, info in target.model_fields.items():
        names.append(info.alias or name)
    return names


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _as_model(arg)
            if found is not None:
                return found
    if origin is typing.Annotated:
        return _as_model(typing.get_args(annotation)[0])
    return None


def _step(annotation: Any, part: str | int) -> Any:
    target = _as_model(annotation)
    if target is not None:
        info = target.model_fields.get(str(part))
        if info is None:
            # pydantic puts the union member's name in loc for tagged unions; skip over it
            return annotation if isinstance(part, str) else None
        return info.annotation
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            found = _step(arg, part)
            if found is not None:
                return found
        return None
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple, set, frozenset) and args:
        return args[0]
    if origin is typing.Annotated:
        return _step(args[0], part)
    return None
