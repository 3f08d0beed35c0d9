"""Load YAML while keeping where every value came from, and turn validation errors into Problems.

Admins edit refsync's configuration and mappings by hand, so every error must point at the
file, line and column to change. :func:`load_yaml` returns plain Python data plus a
:class:`SourceMap` from data paths (``("systems", "salesforce", "url")``) to positions;
:func:`problems_from_validation` translates a pydantic ``ValidationError`` into
:class:`~refsync.errors.Problem` objects, with a "did you mean" for misspelt keys.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from refsync.errors import ConfigError, Problem

__all__ = [
    "LoadedYaml",
    "SourceMap",
    "did_you_mean",
    "load_yaml",
    "problems_from_validation",
    "validate_model",
]

Path_ = tuple[str | int, ...]
M = typing.TypeVar("M", bound=BaseModel)


@dataclass
class SourceMap:
    """Positions (1-based line and column) of keys and values in one YAML file."""

    file: str
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """Position of ``path``: its key when ``key`` is set, else its value.

        Falls back to the nearest ancestor that exists, so an error about a missing field
        points at the mapping that should contain it.
        """
        probe = tuple(path)
        while probe:
            table = self.keys if key else self.values
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))

    def problem(
        self, path: Sequence[str | int], message: str, fix: str = "", *, key: bool = False
    ) -> Problem:
        """Build a Problem located at ``path``."""
        line, column = self.position(path, key=key)
        return Problem(self.file, line, column, message, fix)


@dataclass
class LoadedYaml:
    """A YAML document as plain data, its source positions and the problems found loading it."""

    data: Any
    source: SourceMap
    problems: list[Problem] = field(default_factory=list)


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_constructor = yaml.constructor.SafeConstructor()


def load_yaml(
    path: str | os.PathLike[str],
    *,
    environ: typing.Mapping[str, str] | None = None,
    resolve_references: bool = False,
    display_name: str | None = None,
) -> LoadedYaml:
    """Read a YAML file into plain data, recording positions.

    Args:
        path: the file to read.
        environ: variables for ``${VAR}`` / ``${VAR:-default}`` (defaults to ``os.environ``).
        resolve_references: when set, expand ``${...}`` references in strings and replace a string
            of the form ``file:/path`` with that file's contents (trailing newline removed). Each
            missing variable or unreadable file becomes a Problem; loading carries on.
        display_name: the name used for the file in problems (defaults to ``path`` as given).

    Raises:
        ConfigError: when the file cannot be read or is not valid YAML.
    """
    name = display_name or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [Problem(name, 1, 1, f"cannot read the file: {exc.strerror or exc}",
                     "check the path, or pass another with -c/--config")]
        ) from exc
    return load_yaml_text(
        text, name, environ=environ, resolve_references=resolve_references
    )


def load_yaml_text(
    text: str,
    name: str,
    *,
    environ: typing.Mapping[str, str] | None = None,
    resolve_references: bool = False,
) -> LoadedYaml:
    """Like :func:`load_yaml`, from a string already read; ``name`` is used in problems."""
    source = SourceMap(name)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError(
            [Problem(name, line, column, f"not valid YAML: {exc.problem or exc}",
                     "fix the syntax (indentation, a missing colon or quote)")]
        ) from exc
    loaded = LoadedYaml(None, source)
    if root is None:
        loaded.data = {}
        return loaded
    env = os.environ if environ is None else environ
    resolver = _ReferenceResolver(env, source, loaded.problems) if resolve_references else None
    loaded.data = _build(root, (), source, loaded.problems, resolver)
    return loaded


class _ReferenceResolver:
    def __init__(
        self, environ: typing.Mapping[str, str], source: SourceMap, problems: list[Problem]
    ) -> None:
        self.environ = environ
        self.source = source
        self.problems = problems

    def __call__(self, value: str, path: Path_) -> str:
        def substitute(match: re.Match[str]) -> str:
            variable, default = match.group(1), match.group(2)
            if variable in self.environ:
                return self.environ[variable]
            if default is not None:
                return default
            self.problems.append(
                self.source.problem(
                    path,
                    f"environment variable {variable} is not set",
                    f"export {variable}=..., or write ${{{variable}:-default}} to give a default",
                )
            )
            return ""

        value = _REFERENCE.sub(substitute, value)
        if value.startswith("file:"):
            secret_path = Path(value[len("file:"):]).expanduser()
            try:
                return secret_path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                self.problems.append(
                    self.source.problem(
                        path,
                        f"cannot read secret file {secret_path}: {exc.strerror or exc}",
                        "create the file or correct the file: reference",
                    )
                )
                return ""
        return value


def _build(
    node: yaml.Node,
    path: Path_,
    source: SourceMap,
    problems: list[Problem],
    resolver: Callable[[str, Path_], str] | None,
) -> Any:
    source.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int)):
                key = str(key)
            child = (*path, key)
            if key in result:
                problems.append(
                    Problem(source.file, key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                            f"key '{key}' appears twice", "keep only one of them")
                )
            source.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _build(value_node, child, source, problems, resolver)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, index), source, problems, resolver)
            for index, item in enumerate(node.value)
        ]
    value = _constructor.construct_object(node, deep=True)
    if resolver is not None and isinstance(value, str):
        return resolver(value, path)
    return value


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word``, when one is close enough to be a likely typo."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def validate_model(
    model: type[M], loaded: LoadedYaml, *, context: dict[str, Any] | None = None
) -> M:
    """Validate ``loaded.data`` against ``model``; raise ConfigError with every problem at once.

    Problems found while loading (missing variables, duplicate keys) are reported together with
    the validation errors.
    """
    problems = list(loaded.problems)
    result: M | None = None
    try:
        result = model.model_validate(loaded.data, context=context)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, loaded.source, model))
    if problems or result is None:
        problems.sort(key=lambda p: (p.line, p.column))
        raise ConfigError(problems)
    return result


def problems_from_validation(
    error: ValidationError, source: SourceMap, model: type[BaseModel] | None = None
) -> list[Problem]:
    """Translate every pydantic error into a Problem pointing into the YAML source."""
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        kind = item["type"]
        where = ".".join(str(part) for part in loc) or "(top level)"
        if kind == "extra_forbidden":
            name = str(loc[-1])
            allowed = _allowed_keys(model, loc[:-1]) if model else []
            guess = did_you_mean(name, allowed)
            fix = f"did you mean '{guess}'?" if guess else (
                f"remove it; allowed keys here: {', '.join(sorted(allowed))}" if allowed
                else "remove it"
            )
            problems.append(source.problem(loc, f"unknown key '{name}'", fix, key=True))
        elif kind == "missing":
            problems.append(
                source.problem(loc[:-1], f"'{loc[-1]}' is required here", f"add '{loc[-1]}:'")
            )
        else:
            message = item["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, "):]
            shown = item.get("input")
            value_text = f" (got {shown!r})" if isinstance(shown, (str, int, float, bool)) else ""
            problems.append(
                source.problem(loc, f"{where}: {message}{value_text}", _fix_for(kind))
            )
    return problems


def _fix_for(kind: str) -> str:
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "give a value of the expected type"
    if kind in {"literal_error", "enum"}:
        return "use one of the listed values"
    return ""


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
