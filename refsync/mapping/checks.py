"""Meaning checks on a mapping file, each reported with its file, line and column.

Structure (keys, types) is checked by the pydantic models in :mod:`refsync.mapping.spec`; the
checks here work on the raw loaded data so they still run when some of the structure is wrong,
and every problem in the file is reported in one go.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from refsync.domain import CANONICAL_FIELDS, ReferralStatus
from refsync.errors import Problem, RecordError
from refsync.mapping.rules import Direction
from refsync.mapping.spec import FieldSpec
from refsync.mapping.typed import TYPED_READERS, field_kind, step_default, typed_value
from refsync.mapping.valuemap import match_key, value_key
from refsync.mapping.vocabulary import TRANSFORM_NAMES, Step, TransformArgumentError, build_step
from refsync.validation import shortened
from refsync.yamlsource import SourceMap, did_you_mean, yaml_text

__all__ = ["check_mapping_data", "is_canonical_name", "split_value_map"]

_CUSTOM = re.compile(r"^custom\.[A-Za-z_][A-Za-z0-9_]*$")
_STATUSES = [status.value for status in ReferralStatus]


def is_canonical_name(name: str) -> bool:
    """Whether ``name`` is a canonical Referral field or a ``custom.<name>`` extra."""
    return name in CANONICAL_FIELDS or bool(_CUSTOM.match(name))


def split_value_map(
    values: Mapping[Any, Any], kind: str | None = None,
    written: Mapping[Any, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Split a ``values:`` mapping into its ``remote → canonical`` pairs and its ``out:`` choice.

    Args:
        values: the value map as loaded.
        kind: the field's kind (:func:`field_kind`): a typed one reads each canonical value,
            and each canonical value the ``out:`` choice names, as a value of it
            (:func:`typed_value`): ``big: 1000000`` on ``amount`` maps to ``Decimal("1000000")``.
        written: the text of canonical values YAML read as something else, by their key in
            ``values`` (a typed value is read as written).

    Raises:
        RecordError: with a typed ``kind``, a canonical value is not a value of it.
    """
    pairs: dict[str, Any] = {}
    choice: dict[str, str] = {}
    texts = written or {}
    for remote, canonical in values.items():
        if remote == "out" and isinstance(canonical, Mapping):
            choice = {value_key(typed_value(kind, k)): value_key(v) for k, v in canonical.items()}
        else:
            pairs[value_key(remote)] = typed_value(kind, canonical, texts.get(remote))
    return pairs, choice


def check_mapping_data(data: Any, source: SourceMap) -> list[Problem]:
    """Every meaning problem in a loaded mapping file (structure problems are left to pydantic)."""
    if not isinstance(data, Mapping):
        return []
    fields = data.get("fields")
    if not isinstance(fields, Mapping):
        return []
    problems: list[Problem] = []
    written: dict[str, str] = {}
    key_field = data.get("key_field")
    if isinstance(key_field, str):
        written[key_field] = "key_field"
    for name, spec in fields.items():
        name = str(name)
        problems.extend(_check_name(name, source))
        if isinstance(spec, str):
            spec = {"remote": spec}
        if not isinstance(spec, Mapping):
            continue
        steps = _buildable_steps(spec.get("transform"))
        kind = field_kind(name, steps)
        default_problem = _check_default(name, spec, kind, source)
        if default_problem is not None:
            problems.append(default_problem)
        direction = spec.get("direction", Direction.BOTH.value)
        problems.extend(_check_transforms(name, spec.get("transform"), direction, source))
        problems.extend(_check_step_defaults(name, spec, steps, source))
        problems.extend(_check_unindented_values(name, spec, source))
        values = spec.get("values")
        if isinstance(values, Mapping):
            problems.extend(_check_values(name, values, kind, source))
        remote = spec.get("remote")
        if isinstance(remote, str) and direction in (Direction.OUT.value, Direction.BOTH.value):
            problems.extend(_check_target(name, remote, written, source))
    return problems


def _check_name(name: str, source: SourceMap) -> list[Problem]:
    path = ("fields", name)
    if name == "id":
        return [source.problem(path, "'id' is carried by key_field and cannot be mapped here",
                               "remove this entry; key_field names the remote field for the id",
                               key=True)]
    if is_canonical_name(name):
        return []
    if name.startswith("custom."):
        return [source.problem(path, f"'{name}' is not a valid custom field name",
                               "use custom.<ASCII letters, digits, _> (not starting with a "
                               f"digit), e.g. custom.{_custom_example(name)}", key=True)]
    guess = did_you_mean(name, CANONICAL_FIELDS)
    fix = f"did you mean '{guess}'?" if guess else \
        f"use a canonical field ({', '.join(sorted(CANONICAL_FIELDS))}) or custom.{name}"
    return [source.problem(path, f"unknown canonical field '{name}'", fix, key=True)]


def _custom_example(name: str) -> str:
    """A valid custom name close to ``name`` (``custom.société`` → ``societe``), else
    ``lead_source``."""
    folded = unicodedata.normalize("NFKD", name.removeprefix("custom."))
    example = re.sub(r"[^A-Za-z0-9_]+", "_", folded.encode("ascii", "ignore").decode()).strip("_")
    return example if _CUSTOM.match(f"custom.{example}") else "lead_source"


def _check_default(
    name: str, spec: Mapping[str, Any], kind: str | None, source: SourceMap
) -> Problem | None:
    """The problem with a field's ``default:``, if any: it must be one value of the field's
    type (``kind``, :func:`field_kind`): a number for ``amount``, a lifecycle status for
    ``status``."""
    value = spec.get("default")
    if value is None:
        return None
    path = ("fields", name, "default")
    typed = TYPED_READERS.get(kind) if kind is not None else None
    if isinstance(value, (dict, list)):
        return source.problem(path, "a default must be a single value",
                              typed.fix("default: ") if typed else
                              "write e.g. default: \"(unknown)\"")
    if typed is not None:
        shown = _not_typed(source, path, value, kind)
        return None if shown is None else source.problem(
            path, f"{name} default {shown!r} is not {typed.what}", typed.fix("default: "))
    retyped = _retyped(source, path, value, text_only=name == "status")
    if retyped is not None:
        return retyped
    if name == "status" and value_key(value) not in _STATUSES:
        return source.problem(path, f"status default {value!r} is not a lifecycle status",
                              f"use one of: {', '.join(_STATUSES)}")
    return None


def _not_typed(
    source: SourceMap, path: tuple[str | int, ...], value: Any, kind: str | None,
    *, as_written: bool = True,
) -> str | None:
    """``value``, found at ``path``, as written (shortened) when it is not a value of ``kind``;
    ``None`` when it is.

    The value is read as written when YAML read it as something else (``010``), unless
    ``as_written`` is off: a value passed on as it is, and so as YAML read it.
    """
    written = source.retyped.get(path)
    try:
        typed_value(kind, value, written if as_written else None)
    except RecordError:
        return shortened(written if written is not None else yaml_text(value))
    return None


def _buildable_steps(steps: Any) -> list[Step]:
    """The field's transform steps that build (the others are reported by _check_transforms)."""
    if not isinstance(steps, list):
        return []
    built: list[Step] = []
    for step_spec in steps:
        try:
            built.append(build_step(step_spec))
        except (KeyError, TransformArgumentError):
            continue
    return built


def _check_transforms(name: str, steps: Any, direction: Any, source: SourceMap) -> list[Problem]:
    if not isinstance(steps, list):
        return []
    problems: list[Problem] = []
    for index, step_spec in enumerate(steps):
        path: tuple[str | int, ...] = ("fields", name, "transform", index)
        step_name = step_spec if isinstance(step_spec, str) else (
            str(next(iter(step_spec))) if isinstance(step_spec, dict) and len(step_spec) == 1
            else None)
        try:
            step = build_step(step_spec)
        except KeyError:
            where = path if isinstance(step_spec, str) else (*path, str(step_name))
            problems.append(source.problem(
                where, f"unknown transform '{step_name}'", _transform_fix(str(step_name)),
                key=not isinstance(step_spec, str)))
            continue
        except TransformArgumentError as exc:
            where = path if isinstance(step_spec, str) or step_name is None else (*path, step_name)
            problems.append(source.problem(where, exc.message, exc.fix))
            continue
        if step.write is None and direction == Direction.OUT.value:
            problems.append(source.problem(
                path, f"{step.name} only applies when reading, but '{name}' only flows out",
                "remove it, or set direction: in or both"))
        if step.read is None and direction == Direction.IN.value:
            problems.append(source.problem(
                path, f"{step.name} only applies when writing, but '{name}' only flows in",
                "remove it, or set direction: out or both"))
        for used in step.canonical_fields:
            if not is_canonical_name(used):
                guess = did_you_mean(used, CANONICAL_FIELDS)
                problems.append(source.problem(
                    path, f"{step.name} uses unknown canonical field '{used}'",
                    f"did you mean '{guess}'?" if guess else "use canonical field names"))
    return problems


def _check_unindented_values(
    name: str, spec: Mapping[str, Any], source: SourceMap
) -> list[Problem]:
    """Problems for value map entries written at the indentation of ``values:`` instead of
    under it: YAML reads ``values:`` as holding nothing and each entry as a key of the field."""
    if "values" not in spec or spec["values"] is not None:
        return []
    keys = list(spec)
    strays = [key for key in keys[keys.index("values") + 1:]
              if key not in FieldSpec.model_fields]
    line = source.position(("fields", name, "values"), key=True)[0]
    return [source.problem(
        ("fields", name, key),
        f"'{key}' is not a key of a field: written at the indentation of values: (line {line}), "
        "it leaves the value map empty", "indent it under values:, like a value map entry",
        key=True) for key in strays]


def _check_step_defaults(
    name: str, spec: Mapping[str, Any], steps: list[Step], source: SourceMap
) -> list[Problem]:
    """Problems with the ``{default: V}`` steps of a field whose steps all build (``steps``,
    built from them): V must be a value of the type the value has where the step stands
    (:func:`step_default`)."""
    step_specs = spec.get("transform")
    if not isinstance(step_specs, list) or len(steps) != len(step_specs):
        return []
    problems: list[Problem] = []
    for index, step_spec in enumerate(step_specs):
        found = step_default(name, steps, index, mapped=spec.get("values") is not None,
                             direction=str(spec.get("direction", Direction.BOTH.value)))
        if found is None:
            continue
        path = ("fields", name, "transform", index, "default")
        shown = _not_typed(source, path, step_spec["default"], found.kind,
                           as_written=found.converted)
        if shown is not None:
            typed = TYPED_READERS[found.kind]
            where = f" {found.where}" if found.where else ""
            problems.append(source.problem(
                path, f"{name} {{default: {shown!r}}}{where} is not {typed.what}",
                typed.fix("{default: ", "}")))
    return problems


def _transform_fix(name: str) -> str:
    if name in ("values", "map", "value_map"):
        return "value maps are written with the field's values: key, not as a transform"
    guess = did_you_mean(name, TRANSFORM_NAMES)
    if guess:
        return f"did you mean '{guess}'?"
    return f"use one of: {', '.join(sorted(TRANSFORM_NAMES))}"


def _check_values(
    name: str, values: Mapping[Any, Any], kind: str | None, source: SourceMap
) -> list[Problem]:
    """Problems with a field's value map; ``kind`` is the field's (:func:`field_kind`): a typed
    field's canonical values must be values of its type, and are compared as such."""
    path: tuple[str | int, ...] = ("fields", name, "values")
    problems: list[Problem] = []
    typed = TYPED_READERS.get(kind) if kind is not None else None
    pairs, written_choice = split_value_map(values)
    if not pairs:
        problems.append(
            source.problem(path, "the value map is empty", "add remote: canonical pairs"))
    originals = {value_key(k): k for k in values}
    retyped = _retyped_values(values, path, source, typed_pairs=typed is not None,
                              text_only=name == "status")
    problems.extend(retyped.values())
    collisions = _colliding_keys(pairs, originals, path, source)
    problems.extend(collisions.values())
    refused = set(retyped)
    for remote, canonical in pairs.items():
        if originals[remote] in retyped:
            continue
        if isinstance(canonical, (dict, list)):
            problems.append(source.problem(
                (*path, originals[remote]), f"value map entry {remote!r} must map to one value",
                "write remote value: canonical value"))
        elif typed is not None:
            where = (*path, originals[remote])
            shown = _not_typed(source, where, canonical, kind)
            if shown is not None:
                refused.add(originals[remote])
                problems.append(source.problem(
                    where, f"value map entry {remote!r} maps {name} to {shown!r}, which is not "
                           f"{typed.what}", typed.fix(f"{remote}: ")))
        elif name == "status" and value_key(canonical) not in _STATUSES:
            guess = did_you_mean(value_key(canonical), _STATUSES)
            fix = f"did you mean '{guess}'?" if guess else f"use one of: {', '.join(_STATUSES)}"
            problems.append(source.problem(
                (*path, originals[remote]),
                f"status {canonical!r} is not in the referral lifecycle", fix))
    earlier = _earlier_writings(path, source)
    grouped: dict[str, list[str]] = {}
    for remote, canonical in pairs.items():
        if not isinstance(canonical, (dict, list)) and originals[remote] not in refused \
                and remote not in collisions:
            written = source.retyped.get((*path, originals[remote]))
            grouped.setdefault(value_key(typed_value(kind, canonical, written)), []).append(remote)
    choice = _typed_choice(name, written_choice, kind, path, source, problems)
    for canonical, remotes in grouped.items():
        if len(remotes) > 1 and canonical not in choice and \
                not _ambiguous_by_repeat(canonical, remotes, earlier):
            problems.append(source.problem(
                path, f"{', '.join(map(repr, remotes))} all map to {canonical!r}, "
                      "so writing it back is ambiguous",
                f"add out: {{{canonical}: {remotes[0]!r}}} to say which remote value to write",
                key=True))
    for canonical, (written_canonical, remote) in choice.items():
        where = (*path, "out", written_canonical)
        if ("out", written_canonical) in retyped:
            continue
        if name == "status" and canonical not in _STATUSES:
            problems.append(source.problem(
                where, f"status {canonical!r} is not in the referral lifecycle",
                f"use one of: {', '.join(_STATUSES)}", key=True))
        elif remote not in pairs:
            problems.append(source.problem(
                where, f"out: {canonical!r} → {remote!r}, but {remote!r} is not a remote value "
                       "of this map", f"choose one of: {', '.join(map(repr, pairs))}"))
        elif canonical in grouped and remote not in grouped[canonical] and \
                canonical not in map(value_key, earlier.get(remote, [])):
            problems.append(source.problem(
                where, f"out: {canonical!r} → {remote!r}, but {remote!r} reads back as "
                       f"{pairs[remote]!r}",
                f"choose one of: {', '.join(map(repr, grouped[canonical]))}"))
    return problems


def _typed_choice(
    name: str, choice: Mapping[str, str], kind: str | None, path: tuple[str | int, ...],
    source: SourceMap, problems: list[Problem],
) -> dict[str, tuple[str, str]]:
    """The ``out:`` choice as canonical value (its text as a value of a typed ``kind``, as
    value maps compare it) → (canonical value as written, remote value). A canonical value
    that is not of the typed kind is left out, and its problem added to ``problems``."""
    typed = TYPED_READERS.get(kind) if kind is not None else None
    found: dict[str, tuple[str, str]] = {}
    for canonical, remote in choice.items():
        try:
            found[value_key(typed_value(kind, canonical))] = (canonical, remote)
        except RecordError:
            assert typed is not None  # only a typed kind reads the value
            problems.append(source.problem(
                (*path, "out", canonical),
                f"out: {shortened(canonical)!r} is not {typed.what}, which {name} holds",
                typed.fix("out: {", f": {remote}}}"), key=True))
    return found


def _earlier_writings(path: tuple[str | int, ...], source: SourceMap) -> dict[str, list[Any]]:
    """What the earlier writings of the value map's repeated keys held, by the key's text.

    Loading keeps the last writing of a key written twice and reports the repeat; a problem
    that only the kept writing causes is the repeat's, and is left to that report.
    """
    return {value_key(key[-1]): held for key, held in source.overwritten.items()
            if len(key) == len(path) + 1 and key[:-1] == path}


def _ambiguous_by_repeat(
    canonical: str, remotes: list[str], earlier: Mapping[str, list[Any]]
) -> bool:
    """Whether the map is ambiguous about ``canonical`` only through a key written twice.

    ``approved: accepted`` then ``approved: lost`` beside ``lost: lost`` reads as two remote
    values for ``lost``, and an ``out:`` written twice loses the choices of the first. The
    ambiguity is the repeat's when fewer than two of ``remotes`` map to ``canonical`` in every
    writing, or when an earlier ``out:`` chose a remote value for it.
    """
    if any(isinstance(out, Mapping) and canonical in map(value_key, out)
           for out in earlier.get("out", [])):
        return True
    steady = [remote for remote in remotes
              if all(value_key(value) == canonical for value in earlier.get(remote, []))]
    return len(steady) < 2


def _colliding_keys(
    pairs: Mapping[str, Any], originals: Mapping[str, Any], path: tuple[str | int, ...],
    source: SourceMap,
) -> dict[str, Problem]:
    """Problems for the keys reading cannot tell from an earlier one mapped elsewhere, by key.

    Reading matches a remote value ignoring case and surrounding spaces (:func:`match_key`),
    so ``Qualified: qualified`` and ``qualified: rejected`` in one map collide: a remote
    ``QUALIFIED`` finds only one of them, whichever the map happens to keep. Two spellings
    mapped to the same value are harmless here (writing then needs ``out:``, checked below).
    """
    first_of: dict[str, str] = {}
    found: dict[str, Problem] = {}
    for remote in pairs:
        first = first_of.setdefault(match_key(remote), remote)
        if first == remote or pairs[first] == pairs[remote]:
            continue
        line = source.position((*path, originals[first]), key=True)[0]
        found[remote] = source.problem(
            (*path, originals[remote]),
            f"value map key {remote!r} differs from {first!r} (line {line}) only in case or "
            "surrounding spaces, which reading ignores: the two keys collide",
            "keep one of them, mapped to the value you mean: either finds the remote value "
            "whatever its case", key=True)
    return found


def _retyped(
    source: SourceMap, path: tuple[str | int, ...], value: Any, *, text_only: bool = False
) -> Problem | None:
    """The problem for an unquoted value YAML read as something else (``yes`` → true), if any.

    ``text_only``: the value can only be text (a status), so the fix does not offer what YAML
    read instead.
    """
    written = source.retyped.get(path)
    if written is None:
        return None
    fix = f"quote it (\"{written}\")" if text_only else \
        f"quote it (\"{written}\") to keep the text, or write {value_key(value)}"
    return source.problem(path, f"{written!r} is read by YAML as {value_key(value)}", fix)


def _retyped_values(
    values: Mapping[Any, Any], path: tuple[str | int, ...], source: SourceMap,
    *, typed_pairs: bool = False, text_only: bool = False,
) -> dict[Any, Problem]:
    """Problems for the value map's values (and ``out:`` values) YAML read as something else.

    Keys are kept as written by the loader; values are not, so ``Approved: yes`` would map to
    true and ``out: {qualified: 07}`` would write 7. With ``typed_pairs`` (a typed field) the
    canonical values are read as written, so only the ``out:`` values are checked.
    ``text_only``: the canonical values can only be text (a status).
    """
    found: dict[Any, Problem] = {}
    for remote, canonical in values.items():
        if remote == "out" and isinstance(canonical, Mapping):
            for out_key, out_value in canonical.items():
                problem = _retyped(source, (*path, "out", out_key), out_value)
                if problem is not None:
                    found[("out", out_key)] = problem
            continue
        problem = None if typed_pairs else \
            _retyped(source, (*path, remote), canonical, text_only=text_only)
        if problem is not None:
            found[remote] = problem
    return found


def _check_target(
    name: str, remote: str, written: dict[str, str], source: SourceMap
) -> list[Problem]:
    path = ("fields", name, "remote")
    for other_remote, other in written.items():
        clash = remote == other_remote or remote.startswith(other_remote + ".") or \
            other_remote.startswith(remote + ".")
        if not clash:
            continue
        if other == "key_field":
            message = f"'{name}' writes {remote!r}, which is the key_field"
            fix = "the refsync id is written there automatically; map this field elsewhere"
        else:
            message = f"'{name}' and '{other}' both write remote field {remote!r}" if \
                remote == other_remote else \
                f"'{name}' writes {remote!r}, which overlaps '{other}' writing {other_remote!r}"
            fix = "map each remote field once, or set direction: in on one of them"
        return [source.problem(path, message, fix)]
    written[remote] = name
    return []
