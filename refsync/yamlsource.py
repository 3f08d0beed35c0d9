"""Load YAML while keeping where every value came from.

Admins edit refsync's configuration and mappings by hand, so every error must point at the
file, line and column to change. :func:`load_yaml` returns plain Python data plus a
:class:`SourceMap` from data paths (``("systems", "salesforce", "url")``) to positions, which
:mod:`refsync.validation` uses to place each validation problem.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from refsync.errors import ConfigError, Problem

__all__ = [
    "MAX_EXPANDED_VALUES",
    "LoadedYaml",
    "SourceMap",
    "did_you_mean",
    "load_yaml",
    "yaml_text",
]

Path_ = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Positions (1-based line and column) of keys and values in one YAML file."""

    file: str
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    retyped: dict[Path_, str] = field(default_factory=dict)
    """The text as written of unquoted values YAML read as something that reads back differently
    (``yes`` → ``True``, ``07`` → ``7``), so a check that wants text can ask for quotes."""
    overwritten: dict[Path_, list[Any]] = field(default_factory=dict)
    """What the earlier writings of a key written twice in one mapping held (the data keeps the
    last one; loading reports the repeat), so a check can tell a problem the repeat alone causes:
    a single value as YAML reads it, a mapping as its single-valued entries, else ``None``."""

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


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?\}")
"""A complete reference, ``${VAR}`` or ``${VAR:-default}`` (matched against one candidate)."""
_REFERENCE_CANDIDATE = re.compile(r"\$\{[^}]*\}?")
"""Anything that starts like a reference, so a broken one is reported rather than kept as text."""
_YAML_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = _YAML_TAG + "merge"
_TEXT_TAGS = frozenset({_MERGE_TAG, _YAML_TAG + "value"})
"""Tags YAML 1.1 gives a plain ``<<`` or ``=`` that nothing constructs: outside a key, text."""
_SCALAR_TAGS = frozenset(
    tag for tag in yaml.constructor.SafeConstructor.yaml_constructors
    if tag and tag.removeprefix(_YAML_TAG) not in {"map", "omap", "pairs", "seq", "set"}
) | _TEXT_TAGS
_MAPPING_TAGS = frozenset({_YAML_TAG + "map", _YAML_TAG + "set"})
_SEQUENCE_TAGS = frozenset({_YAML_TAG + "seq", _YAML_TAG + "omap", _YAML_TAG + "pairs"})
_SYNTAX_FIX = "fix the syntax (indentation, a missing colon or quote)"

MAX_EXPANDED_VALUES = 100_000
"""How many values aliases may add to a file beyond those it writes. A real configuration or
mapping is a few hundred; aliases of blocks made of aliases (a "billion laughs") would make
refsync walk billions."""


def load_yaml(
    path: str | os.PathLike[str],
    *,
    environ: typing.Mapping[str, str] | None = None,
    resolve_references: bool = False,
    display_name: str | None = None,
    unreadable_fix: str = "check the path",
) -> LoadedYaml:
    """Read a YAML file into plain data, recording positions.

    Args:
        path: the file to read (UTF-8).
        environ: variables for ``${VAR}`` / ``${VAR:-default}`` (defaults to ``os.environ``).
        resolve_references: when set, expand ``${...}`` references in strings and replace a string
            of the form ``file:/path`` with that file's contents (trailing newline removed). Each
            missing variable or unreadable file becomes a Problem; loading carries on.
        display_name: the name used for the file in problems (defaults to ``path`` as given).
        unreadable_fix: the fix given when the file cannot be read.

    Raises:
        ConfigError: when the file cannot be read, is not UTF-8 or is not valid YAML.
    """
    name = display_name or str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            [Problem(name, 1, 1, f"cannot read the file: {exc.strerror or exc}", unreadable_fix)]
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([_not_utf8(name, raw, exc.start)]) from None
    return load_yaml_text(
        text, name, environ=environ, resolve_references=resolve_references
    )


def _not_utf8(name: str, raw: bytes, start: int) -> Problem:
    """The problem for a file whose byte at ``start`` is not UTF-8, located by line and column."""
    line_start = raw.rfind(b"\n", 0, start) + 1
    column = len(raw[line_start:start].decode("utf-8", errors="replace")) + 1
    return Problem(name, raw.count(b"\n", 0, start) + 1, column,
                   f"not UTF-8 (byte 0x{raw[start]:02x})", "save the file as UTF-8")


def load_yaml_text(
    text: str,
    name: str,
    *,
    environ: typing.Mapping[str, str] | None = None,
    resolve_references: bool = False,
) -> LoadedYaml:
    """Like :func:`load_yaml`, from a string already read; ``name`` is used in problems.

    Plain (unquoted) mapping keys are kept as written: YAML 1.1 would read a key ``yes`` as
    ``True`` and ``07`` as ``7``, but a key is a name or a remote value, never a boolean.
    Merge keys (``<<: *anchor``) are expanded, the merged keys keeping the positions where the
    anchored block wrote them.
    """
    source = SourceMap(name)
    try:
        loader, root = _compose(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_problem(name, text, exc)]) from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_unreadable_character(name, text, exc)]) from None
    except RecursionError:
        raise ConfigError([_too_deep(name)]) from None
    loaded = LoadedYaml(None, source)
    if root is None:
        loaded.data = {}
        return loaded
    env = os.environ if environ is None else environ
    resolver = _ReferenceResolver(env, source, loaded.problems) if resolve_references else None
    builder = _Builder(source, loaded.problems, resolver)
    try:
        if loader.aliases_used:
            builder.refuse_overgrown(root, loader)
        loaded.data = builder.build(root, ())
    except RecursionError:
        raise ConfigError([_too_deep(name)]) from None
    loaded.problems[:] = list(dict.fromkeys(loaded.problems))  # a shared block reports once
    return loaded


def _compose(text: str) -> tuple[_Loader, yaml.Node | None]:
    """The document's node graph (an alias is the node it names), and the loader's counts."""
    loader = _Loader(text)
    try:
        return loader, loader.get_single_node()
    finally:
        loader.dispose()


class _RecursiveAliasError(yaml.composer.ComposerError):
    """An alias used inside the block its anchor names (``a: &x [*x]``)."""


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing an alias inside the block it names (it would never end).

    It also counts what it composes, for :meth:`_Builder.refuse_overgrown`: the values written
    (``written``), the aliases used (``aliases_used``) and the anchor naming each anchored node.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open_anchors: dict[str, yaml.Mark] = {}
        self.written = 0
        self.aliases_used = 0
        self.anchor_of: dict[int, str] = {}
        """The anchor of each anchored node, by the node's ``id``."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose one node, tracking the anchored blocks being composed."""
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open_anchors:
                raise _RecursiveAliasError(
                    f"&{event.anchor}", self._open_anchors[event.anchor],
                    f"*{event.anchor}", event.start_mark)
            self.aliases_used += 1
            return super().compose_node(parent, index)
        self.written += 1
        event = self.peek_event()
        anchor = event.anchor
        if anchor is None or anchor in self._open_anchors:
            return super().compose_node(parent, index)
        self._open_anchors[anchor] = event.start_mark
        try:
            node = super().compose_node(parent, index)
        finally:
            del self._open_anchors[anchor]
        self.anchor_of[id(node)] = anchor
        return node


@dataclass(frozen=True)
class _Construct:
    """How to report a syntax error PyYAML found inside one kind of construct."""

    noun: str
    start_first: bool  # the mistake is usually where the construct starts, not where parsing failed
    fix: str


_CONSTRUCTS = {
    "while scanning a quoted scalar": _Construct("quoted value", True, "close the quote"),
    "while scanning a simple key": _Construct(
        "key", True, "add the ':' after the key, or close its quote"),
    "while parsing a flow mapping": _Construct(
        "{...} mapping", True, "close it with }, and separate its entries with commas"),
    "while parsing a flow sequence": _Construct(
        "[...] list", True, "close it with ], and separate its items with commas"),
    "while parsing a block mapping": _Construct(
        "mapping", False, "indent this line like the other keys of that mapping, or add the "
                          "missing ':'"),
    "while parsing a block collection": _Construct(
        "list", False, "indent this line like the other items of that list, or start it with '- '"),
}

_PROBLEM_FIXES = {
    "mapping values are not allowed here": "quote a value that contains ': ', or indent this line "
                                           "under its key",
    "found undefined alias": "mark the block to repeat with &name before using *name",
    "found character '\\t'": "indent with spaces, not tabs",
}


def _syntax_problem(name: str, text: str, exc: yaml.MarkedYAMLError) -> Problem:
    """A PyYAML syntax error as a Problem at the line a person should look at.

    PyYAML reports where parsing failed and, for most errors, where the construct it was reading
    started. For an unclosed quote, bracket or key the start is the mistake; for a badly indented
    line it is where parsing failed. Both positions are in the message.
    """
    if isinstance(exc, _RecursiveAliasError):
        return _recursive_alias(name, exc)
    problem = exc.problem or str(exc)
    failed, started = exc.problem_mark or exc.context_mark, exc.context_mark
    if failed is None:
        return Problem(name, 1, 1, f"not valid YAML: {problem}", _SYNTAX_FIX)
    if started is not None and (exc.context or "").startswith("found duplicate anchor"):
        return Problem(name, failed.line + 1, failed.column + 1,
                       f"not valid YAML: {(exc.context or '').split(';')[0]} (first at line "
                       f"{started.line + 1})", "give each anchor its own name")
    construct = _CONSTRUCTS.get(exc.context or "")
    if started is not None and construct is not None and construct.start_first:
        return Problem(name, started.line + 1, started.column + 1,
                       f"not valid YAML: {problem} at line {failed.line + 1}, column "
                       f"{failed.column + 1}, in the {construct.noun} that starts here",
                       construct.fix)
    tokens = _tokens_before(text, failed)
    last = tokens[-1] if tokens else None
    if isinstance(last, yaml.ScalarToken) and last.start_mark.line < last.end_mark.line \
            == failed.line:
        start = last.start_mark
        if last.style in ('"', "'"):
            return Problem(name, start.line + 1, start.column + 1,
                           f"not valid YAML: the quoted value that starts here runs on to line "
                           f"{failed.line + 1}, where: {problem}", "close the quote on this line")
        if last.style is None and problem.startswith("mapping values are not allowed"):
            return _run_on_value(name, text, tokens, failed)
    where = ""
    if started is not None and started.line != failed.line:
        what = f"the {construct.noun} that started" if construct else \
            (exc.context or "").removeprefix("while ")
        where = f" ({what} at line {started.line + 1})"
    fix = construct.fix if construct else next(
        (fix for start, fix in _PROBLEM_FIXES.items() if problem.startswith(start)), _SYNTAX_FIX)
    return Problem(name, failed.line + 1, failed.column + 1,
                   f"not valid YAML: {problem}{where}", fix)


def _tokens_before(text: str, failed: yaml.Mark) -> list[yaml.Token]:
    """The tokens that start before the point where parsing failed, in order.

    A quote left open swallows the following lines up to the next quote character, and a plain
    value goes on over a more indented line; parsing then fails far from the mistake, at the
    end of the last of these tokens, and its start (or the key before it) is where to look.
    """
    tokens: list[yaml.Token] = []
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if token.start_mark.index >= failed.index:
                break
            tokens.append(token)
    except yaml.YAMLError:
        pass
    return tokens


def _run_on_value(
    name: str, text: str, tokens: list[yaml.Token], failed: yaml.Mark
) -> Problem:
    """The problem for a plain value (the last of ``tokens``) that goes on over a more indented
    line, up to that line's key, where parsing failed.

    Which line is out of place depends on the lines around the value's key:

    - the key is written at the indentation of an empty key just above it (``values:`` then
      ``Open: submitted`` not indented under it): YAML reads the empty key as holding nothing,
      and the key's line is the one to indent, like the line the value runs on to;
    - the key is less indented than the line above it and the line the value runs on to
      (``a: x``, ``b: y`` two spaces left, ``c: z``): most likely its own line is out of place,
      else the next one is;
    - otherwise the line the value runs on to is indented too far, unless the value's line is
      a key missing its ``:``.
    """
    value = tokens[-1]
    line, run_on = value.start_mark.line + 1, failed.line + 1
    ends = f"runs on to line {run_on}, where a ':' follows it"
    key = _key_of(tokens)
    if key is not None and len(tokens) >= 6:
        before, empty = tokens[-5], tokens[-6]
        if isinstance(before, yaml.ValueToken) and isinstance(empty, yaml.ScalarToken):
            return Problem(
                name, line, key.start_mark.column + 1,
                f"not valid YAML: the key here is not indented under '{empty.value}' (line "
                f"{empty.start_mark.line + 1}), so YAML reads '{empty.value}' as empty, and the "
                f"value after this key {ends}",
                f"indent line {line} like line {run_on}, under '{empty.value}'")
        if isinstance(before, yaml.BlockEndToken) and \
                _indentation(text, _line_above(tokens)) == _indentation(text, failed.line):
            return Problem(
                name, line, key.start_mark.column + 1,
                f"not valid YAML: the key here is less indented than the lines above and below "
                f"it, and its value {ends}",
                f"indent line {line} like the lines around it; or, if line {line} is where it "
                f"belongs, indent line {run_on} like it")
    return Problem(
        name, line, value.start_mark.column + 1, f"not valid YAML: the value that starts here "
        f"{ends}", f"if line {line} holds a key, write a ':' and a space after it (key: value); "
        f"otherwise indent line {run_on} like the keys beside it")


def _key_of(tokens: list[yaml.Token]) -> yaml.ScalarToken | None:
    """The key written before the value that ends ``tokens`` on its line, if there is one."""
    if len(tokens) < 4 or not isinstance(tokens[-2], yaml.ValueToken) or \
            not isinstance(tokens[-4], yaml.KeyToken):
        return None
    key = tokens[-3]
    if not isinstance(key, yaml.ScalarToken) or \
            key.start_mark.line != tokens[-1].start_mark.line:
        return None
    return key


def _line_above(tokens: list[yaml.Token]) -> int:
    """The line (0-based) of the last token before the blocks ending just before the value's
    key (``tokens`` ends: block ends, key, key text, ':', value)."""
    index = len(tokens) - 5
    while index > 0 and isinstance(tokens[index], yaml.BlockEndToken):
        index -= 1
    return tokens[index].start_mark.line


def _indentation(text: str, line: int) -> int:
    """How many spaces start line ``line`` (0-based) of ``text``."""
    lines = text.splitlines()
    written = lines[line] if line < len(lines) else ""
    return len(written) - len(written.lstrip(" "))


def _recursive_alias(name: str, exc: _RecursiveAliasError) -> Problem:
    alias, anchor = exc.problem, exc.context
    used, anchored = exc.problem_mark, exc.context_mark
    line, column = (used.line + 1, used.column + 1) if used else (1, 1)
    anchor_line = anchored.line + 1 if anchored else line
    return Problem(
        name, line, column,
        f"the alias {alias} is used inside the block {anchor} (line {anchor_line}) names, "
        "so it would repeat itself forever",
        "an alias can only repeat a block from outside it: write the values out instead")


def _unreadable_character(name: str, text: str, exc: yaml.reader.ReaderError) -> Problem:
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    code = ord(exc.character) if isinstance(exc.character, str) else exc.character
    return Problem(name, line, column,
                   f"contains a control character (0x{code:02x}) that YAML does not allow",
                   "remove it (is this a text file?)")


def _overgrown(
    name: str, node: yaml.Node, children: list[yaml.Node], sizes: dict[int, int],
    loader: _Loader,
) -> Problem:
    """The problem of a block that aliases make too big, naming the block it repeats most."""
    noun = "mapping" if isinstance(node, yaml.MappingNode) else "list"
    message = f"aliases make this file expand to more than {MAX_EXPANDED_VALUES:,} values"
    biggest = max(children, key=lambda child: sizes[id(child)])
    anchor = loader.anchor_of.get(id(biggest))
    if anchor is not None:
        times = sum(child is biggest for child in children)
        message += (f": the {noun} here repeats &{anchor} (line {_position(biggest)[0]}, "
                    f"{sizes[id(biggest)]:,} values) {times} time{'s' if times != 1 else ''}")
    else:
        message += f": the {noun} here holds {1 + sum(sizes[id(c)] for c in children):,}"
    line, column = _position(node)
    return Problem(
        name, line, column, message,
        "write the values out, or repeat fewer blocks: each *name copies the whole block "
        "&name marks, so aliases of blocks made of aliases multiply")


def _too_deep(name: str) -> Problem:
    return Problem(name, 1, 1, "the YAML is nested too deeply to read",
                   "flatten it: refsync's files are only a few levels deep")


class _ReferenceResolver:
    """Expands ``${VAR}``, ``${VAR:-default}`` and ``file:/path`` in the strings of a file."""

    def __init__(
        self, environ: typing.Mapping[str, str], source: SourceMap, problems: list[Problem]
    ) -> None:
        self.environ = environ
        self.source = source
        self.problems = problems

    def __call__(self, value: str, path: Path_) -> str:
        """The string at ``path`` with its references expanded; each broken one is a Problem."""
        value = _REFERENCE_CANDIDATE.sub(lambda match: self._expand(match.group(), path), value)
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
            except UnicodeDecodeError as exc:
                self.problems.append(
                    self.source.problem(
                        path,
                        f"secret file {secret_path} is not UTF-8 text (byte "
                        f"0x{exc.object[exc.start]:02x} at offset {exc.start})",
                        "save the secret as UTF-8 text (a binary key as PEM)",
                    )
                )
                return ""
        return value

    def _expand(self, written: str, path: Path_) -> str:
        """One reference's value, like the shell: an empty variable counts as unset."""
        reference = _REFERENCE.fullmatch(written)
        if reference is None:
            self.problems.append(_broken_reference(self.source, path, written))
            return written
        variable, default = reference.group(1), reference.group(2)
        value = self.environ.get(variable, "")
        if value:
            return value
        if default is not None:
            return default
        if variable in self.environ:
            message = f"environment variable {variable} is set but empty"
            fix = f"give {variable} a value (empty counts as unset), or write " \
                f"${{{variable}:-default}} to give a default"
        else:
            message = f"environment variable {variable} is not set"
            fix = f"export {variable}=..., or write ${{{variable}:-default}} to give a default"
        self.problems.append(self.source.problem(path, message, fix))
        return ""


def _broken_reference(source: SourceMap, path: Path_, written: str) -> Problem:
    shown = written if len(written) <= 60 else written[:57] + "..."
    if not written.endswith("}"):
        return source.problem(path, f"'{shown}' is not a complete reference", "close it with }")
    name, colon, rest = written[2:-1].partition(":")
    if colon and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and not rest.startswith("-"):
        return source.problem(path, f"'{shown}' is not a valid reference",
                              f"write ${{{name}:-{rest}}} to give a default")
    return source.problem(
        path, f"'{shown}' is not a valid reference",
        "write ${NAME} or ${NAME:-default}, NAME being letters, digits and _ (not first a digit)")


class _Builder:
    """Turns composed YAML nodes into plain data, recording positions and problems."""

    def __init__(
        self,
        source: SourceMap,
        problems: list[Problem],
        resolver: Callable[[str, Path_], str] | None,
    ) -> None:
        self.source = source
        self.problems = problems
        self.resolver = resolver
        self.constructor = yaml.constructor.SafeConstructor()
        self._entries_of: dict[int, list[tuple[Any, yaml.Node, yaml.Node]]] = {}
        """Each mapping's entries, merge keys expanded, by the node's ``id``: a block shared
        through aliases is worked out once, however often it is used."""
        self._overwritten_of: dict[int, dict[Any, list[Any]]] = {}
        """Each mapping's keys written more than once, with what their earlier writings held
        (:func:`_written_value`), by the node's ``id``."""

    def refuse_overgrown(self, root: yaml.Node, loader: _Loader) -> None:
        """Refuse a document whose aliases would make it expand past the limit.

        Each block's expanded size is counted once, from the sizes of the blocks in it, so the
        cost follows the file's length, not the size it would expand to.

        Raises:
            ConfigError: at the first block (in the order they close) that expands past
                :data:`MAX_EXPANDED_VALUES` more values than the file writes.
        """
        sizes: dict[int, int] = {}
        limit = MAX_EXPANDED_VALUES + loader.written
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        while stack:
            node, children_done = stack.pop()
            if id(node) in sizes:
                continue
            children = self._children(node)
            if not children_done:
                stack.append((node, True))
                stack.extend((child, False) for child in children if id(child) not in sizes)
                continue
            size = 1 + sum(sizes[id(child)] for child in children)
            if size > limit:
                raise ConfigError([_overgrown(self.source.file, node, children, sizes, loader)])
            sizes[id(node)] = size

    def _children(self, node: yaml.Node) -> list[yaml.Node]:
        """The nodes ``node`` holds once merge keys are expanded (a mapping's keys and values)."""
        if isinstance(node, yaml.MappingNode):
            return [part for _, key_node, value_node in self._entries(node)
                    for part in (key_node, value_node)]
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        return []

    def build(self, node: yaml.Node, path: Path_) -> Any:
        """The plain value of ``node``, found at ``path`` in the data."""
        self.source.values[path] = _position(node)
        if isinstance(node, yaml.MappingNode):
            self._check_tag(node, _MAPPING_TAGS)
            result: dict[Any, Any] = {}
            entries = self._entries(node)
            overwritten = self._overwritten_of.get(id(node), {})
            for key, key_node, value_node in entries:
                child = (*path, key)
                self.source.keys[child] = _position(key_node)
                if key in overwritten:
                    self.source.overwritten[child] = overwritten[key]
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, _SEQUENCE_TAGS)
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        if not isinstance(node, yaml.ScalarNode):
            return None  # the composer makes no other kind of node
        value = self._scalar(node)
        if isinstance(value, str):
            return self.resolver(value, path) if self.resolver is not None else value
        if value is not None and node.style is None and yaml_text(value) != node.value:
            self.source.retyped[path] = node.value
        return value

    def _entries(self, node: yaml.MappingNode) -> list[tuple[Any, yaml.Node, yaml.Node]]:
        """Key, key node and value node of each entry, merge keys expanded.

        Keys written in the mapping win over merged ones; among merged blocks, the first wins.
        """
        known = self._entries_of.get(id(node))
        if known is None:
            known = self._entries_of[id(node)] = self._expanded_entries(node)
        return known

    def _expanded_entries(self, node: yaml.MappingNode) -> list[tuple[Any, yaml.Node, yaml.Node]]:
        merged: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        written: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for shared in self._merged_blocks(value_node):
                    for key, shared_key, shared_value in self._entries(shared):
                        merged.setdefault(key, (shared_key, shared_value))
                continue
            key = self._key(key_node)
            if key is _UNUSABLE:
                continue
            if key in written:
                earlier = self._overwritten_of.setdefault(id(node), {}).setdefault(key, [])
                earlier.append(self._written_value(written[key][1]))
                times = "twice" if len(earlier) == 1 else f"{len(earlier) + 1} times"
                self.problems.append(_problem_at(
                    self.source.file, key_node, f"key '{key}' appears {times}",
                    "keep only one of them"))
            written[key] = (key_node, value_node)
        return [(key, key_node, value_node)
                for key, (key_node, value_node) in {**merged, **written}.items()]

    def _merged_blocks(self, node: yaml.Node) -> list[yaml.MappingNode]:
        """The mappings a merge key (``<<``) names: one, or a list of them."""
        if isinstance(node, yaml.MappingNode):
            return [node]
        if isinstance(node, yaml.SequenceNode) and node.value and all(
                isinstance(item, yaml.MappingNode) for item in node.value):
            return list(node.value)
        self.problems.append(_problem_at(
            self.source.file, node, "a merge key (<<) takes a mapping to copy keys from",
            "write <<: *name, where &name marks the mapping to share (or <<: [*one, *two])"))
        return []

    def _key(self, node: yaml.Node) -> Any:
        """A mapping key: a plain one as written, a quoted one as YAML reads it."""
        if not isinstance(node, yaml.ScalarNode):
            self.problems.append(_problem_at(
                self.source.file, node, "a key must be a single value, not a list or mapping",
                "write the key as text"))
            return _UNUSABLE
        if node.style is None or node.tag not in _SCALAR_TAGS:
            self._check_tag(node, _SCALAR_TAGS)
            return node.value  # plain keys as written: YAML 1.1 would turn `yes:` into True
        key = self._scalar(node)
        return key if isinstance(key, (str, int)) else str(key)

    def _scalar(self, node: yaml.ScalarNode, *, quietly: bool = False) -> Any:
        """A scalar's value; the text as written when its tag is unknown or does not fit.

        ``quietly`` reports nothing about it (a writing that a repeated key overwrote: its
        problems are the repeat's).
        """
        known = node.tag in _SCALAR_TAGS if quietly else self._check_tag(node, _SCALAR_TAGS)
        if not known or node.tag in _TEXT_TAGS:
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, AttributeError):
            if quietly:
                return node.value
            self.problems.append(_problem_at(
                self.source.file, node,
                f"'{node.value}' cannot be read as {_tag_text(node.tag)}",
                f"correct the value, or remove the {_tag_text(node.tag)} tag"))
            return node.value

    def _written_value(self, node: yaml.Node) -> Any:
        """What an overwritten writing of a key held: a single value as YAML reads it (its
        text when it cannot be read), a mapping as its single-valued entries (keys as
        written), else ``None``. Nothing deeper is read, so aliases cannot make it big."""
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, quietly=True)
        if isinstance(node, yaml.MappingNode):
            return {key.value: self._scalar(value, quietly=True) for key, value in node.value
                    if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode)}
        return None

    def _check_tag(self, node: yaml.Node, allowed: frozenset[str]) -> bool:
        """Whether ``node``'s tag is one refsync reads; reports the problem when it is not."""
        if node.tag in allowed:
            return True
        fix = "remove the tag: refsync reads plain YAML (mappings, lists, text and numbers)"
        if self.resolver is not None and isinstance(node, yaml.ScalarNode) and \
                re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node.value):
            fix = f"remove the tag; to read an environment variable, write ${{{node.value}}}"
        self.problems.append(_problem_at(
            self.source.file, node, f"the YAML tag '{_tag_text(node.tag)}' is not supported",
            fix))
        return False


_UNUSABLE: Any = object()


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _problem_at(file: str, node: yaml.Node, message: str, fix: str) -> Problem:
    line, column = _position(node)
    return Problem(file, line, column, message, fix)


def _tag_text(tag: str) -> str:
    """A tag as it is written: ``!!int`` for YAML's own, ``!env`` for a custom one."""
    return "!!" + tag[len(_YAML_TAG):] if tag.startswith(_YAML_TAG) else tag


def yaml_text(value: Any) -> str:
    """The text a non-string YAML value reads back as (``true``, ``7``, ``1.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word``, when one is close enough to be a likely typo."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None
