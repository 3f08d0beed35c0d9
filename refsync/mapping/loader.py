"""Load mapping files (paths or ``builtin:<name>``), validate them fully, and compile them."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from refsync.errors import ConfigError, Problem
from refsync.mapping.checks import check_mapping_data
from refsync.mapping.compiled import CompiledMapping, compile_mapping
from refsync.mapping.spec import MappingSpec
from refsync.validation import problems_from_validation, shortened
from refsync.yamlsource import LoadedYaml, did_you_mean, load_yaml

__all__ = [
    "BUILTIN_PREFIX",
    "builtin_mapping_names",
    "default_mapping_path",
    "load_mapping",
    "parse_mapping",
    "resolve_mapping_reference",
]

BUILTIN_PREFIX = "builtin:"

def _defaults_dir() -> Path:
    return Path(str(resources.files("refsync.mapping").joinpath("defaults")))


def builtin_mapping_names() -> list[str]:
    """Names of the mappings shipped with refsync (``salesforce-lead``, ...)."""
    return sorted(path.stem for path in _defaults_dir().glob("*.yaml"))


def default_mapping_path(name: str) -> Path:
    """The packaged file of a shipped mapping, e.g. ``default_mapping_path("salesforce-lead")``.

    Raises:
        ConfigError: no shipped mapping has that name (the problem lists the ones that exist).
    """
    stem = name.removeprefix(BUILTIN_PREFIX).removesuffix(".yaml")
    names = builtin_mapping_names()
    if stem not in names:  # looked up by name: any text, however long, is just not one
        guess = did_you_mean(stem, names)
        fix = f"did you mean 'builtin:{guess}'?" if guess else \
            f"use one of: {', '.join(BUILTIN_PREFIX + n for n in names)}"
        shown = shortened(stem)
        raise ConfigError([Problem(f"{BUILTIN_PREFIX}{shown}", 1, 1,
                                   f"there is no built-in mapping named '{shown}'", fix)])
    return _defaults_dir() / f"{stem}.yaml"


def resolve_mapping_reference(reference: str | os.PathLike[str]) -> tuple[Path, str]:
    """Turn ``builtin:<name>`` or a file path into (file to read, name to show in problems)."""
    text = os.fspath(reference)
    if text.startswith(BUILTIN_PREFIX):
        return default_mapping_path(text), BUILTIN_PREFIX + text[len(BUILTIN_PREFIX):].removesuffix(
            ".yaml")
    return Path(text), text


def parse_mapping(loaded: LoadedYaml) -> tuple[MappingSpec | None, list[Problem]]:
    """Validate loaded YAML as a mapping: structure (pydantic) and meaning, all problems at once.

    Returns:
        The spec (``None`` if the structure is invalid) and every problem found, sorted by
        position. The spec must not be used when problems are returned.
    """
    spec: MappingSpec | None = None
    structure: list[Problem] = []
    try:
        spec = MappingSpec.model_validate(loaded.data)
    except ValidationError as exc:
        structure = problems_from_validation(exc, loaded.source, MappingSpec)
    meaning = check_mapping_data(loaded.data, loaded.source)
    explained = {(p.line, p.column) for p in meaning}
    # a meaning check knows mapping files: its words win over the structure's at one place
    problems = [*loaded.problems, *meaning,
                *(p for p in structure if (p.line, p.column) not in explained)]
    unique = sorted(set(problems), key=lambda p: (p.file, p.line, p.column, p.message))
    return spec, unique


def load_mapping(reference: str | os.PathLike[str]) -> CompiledMapping:
    """Load, validate and compile a mapping file, or a shipped one as ``builtin:<name>``.

    Raises:
        ConfigError: with every problem in the file, each with its file, line and column.
    """
    path, display = resolve_mapping_reference(reference)
    loaded = load_yaml(path, display_name=display)
    spec, problems = parse_mapping(loaded)
    if problems or spec is None:
        raise ConfigError(problems or [Problem(
            display, 1, 1, "not a mapping file",
            "write system:, object:, key_field: and fields: at the top level")])
    return compile_mapping(spec, name=display, source=loaded.source)
