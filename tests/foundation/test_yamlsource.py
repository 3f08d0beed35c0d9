"""Reading admins' YAML: every mistake a problem at a line and column, never a traceback."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from refsync.config import load_config
from refsync.errors import ConfigError, Problem
from refsync.yamlsource import load_yaml, load_yaml_text

CONFIG = """\
version: 1
state:
  url: sqlite:///state.db
systems:
  partnerstack:
    role: prm
    settings:
      secret_key: ${PS_SECRET}
    streams:
      leads: &stream
        object: leads
        mapping: builtin:partnerstack-leads
        batch_size: 50
      more:
        <<: *stream
        object: customers
"""


def write(tmp_path: Path, text: str, name: str = "refsync.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(text: str, **options: object) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_yaml_text(textwrap.dedent(text).lstrip("\n"), "f.yaml", **options)  # type: ignore[arg-type]
    return info.value.problems


def config_problems(tmp_path: Path, text: str, environ: dict[str, str]) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=environ)
    return info.value.problems


# merge keys, tags, recursive aliases


def test_merge_keys_share_a_block_and_keep_the_shared_lines(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, CONFIG), environ={"PS_SECRET": "x"})
    streams = loaded.config.systems["partnerstack"].streams
    assert streams["more"].object == "customers"
    assert streams["more"].batch_size == 50
    assert streams["more"].mapping == "builtin:partnerstack-leads"
    where = loaded.source.position
    assert where(("systems", "partnerstack", "streams", "more", "object")) == (16, 17)
    assert where(("systems", "partnerstack", "streams", "more", "batch_size")) == (13, 21)


def test_a_mistake_in_a_shared_block_is_reported_once_at_its_line(tmp_path: Path) -> None:
    text = CONFIG.replace("batch_size: 50", "batch_sise: 50")
    problems = config_problems(tmp_path, text, {"PS_SECRET": "x"})
    assert [(p.line, p.column, p.message) for p in problems] == [
        (13, 9, "unknown key 'batch_sise'")]


def test_merge_order_follows_yaml_written_keys_win_then_the_first_block() -> None:
    loaded = load_yaml_text(textwrap.dedent("""
        a: &a {x: 1, y: 2}
        c: &c {y: 3, z: 4}
        b:
          <<: [*a, *c]
          z: 5
        """), "f.yaml")
    assert loaded.data["b"] == {"x": 1, "y": 2, "z": 5}
    assert loaded.problems == []


def test_a_merge_key_needs_a_mapping() -> None:
    loaded = load_yaml_text("a:\n  <<: shared\n  x: 1\n", "f.yaml")
    assert loaded.data == {"a": {"x": 1}}
    (problem,) = loaded.problems
    assert (problem.line, problem.column) == (2, 7)
    assert "merge key (<<) takes a mapping" in problem.message
    assert "<<: *name" in problem.fix


def test_a_custom_tag_is_a_problem_at_its_position(tmp_path: Path) -> None:
    text = CONFIG.replace("version: 1\n", "version: 1\ninstance: !env INSTANCE\n")
    problems = config_problems(tmp_path, text, {"PS_SECRET": "x"})
    assert [(p.line, p.column) for p in problems] == [(2, 11)]
    assert problems[0].message == "the YAML tag '!env' is not supported"
    assert "${INSTANCE}" in problems[0].fix


def test_python_tags_and_unreadable_tagged_values_are_problems() -> None:
    loaded = load_yaml_text(
        'a: !!python/object/apply:os.system ["echo"]\nb: !!int lots\nc: =\n', "f.yaml")
    assert loaded.data["b"] == "lots" and loaded.data["c"] == "="
    assert [(p.line, p.message) for p in loaded.problems] == [
        (1, "the YAML tag '!!python/object/apply:os.system' is not supported"),
        (2, "'lots' cannot be read as !!int"),
    ]


@pytest.mark.parametrize("text, line, column", [
    ("version: 1\ninstance: &a [*a]\n", 2, 15),
    ("a: &a\n  x: 1\n  <<: *a\n", 3, 7),
])
def test_a_recursive_alias_is_a_problem(text: str, line: int, column: int) -> None:
    (problem,) = problems_of(text)
    assert (problem.line, problem.column) == (line, column)
    assert "the alias *a is used inside the block &a" in problem.message
    assert "write the values out" in problem.fix


def nested_aliases(levels: int, width: int = 10) -> str:
    """A "billion laughs": each level's list repeats the level before it ``width`` times."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]"
              for level in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(30)
def test_aliases_that_multiply_are_refused_at_the_block_that_grows_too_big() -> None:
    for levels in (6, 9):  # a million values, then a billion: refused as fast
        started = time.perf_counter()
        (problem,) = problems_of(nested_aliases(levels), resolve_references=True)
        assert time.perf_counter() - started < 2
        # a4 is the first block past 100,000 values: ten times a3's 11,111
        assert (problem.line, problem.column) == (5, 5)
        assert problem.message == (
            "aliases make this file expand to more than 100,000 values: the list here repeats "
            "&a3 (line 4, 11,111 values) 10 times")
        assert "write the values out" in problem.fix


@pytest.mark.timeout(30)
def test_merge_keys_of_merge_keys_load_in_linear_time() -> None:
    lines = ["b0: &b0 {k0: 0}"]
    lines += [f"b{level}: &b{level} {{<<: [" + ", ".join([f"*b{level - 1}"] * 10)
              + f"], k{level}: {level}}}" for level in range(1, 12)]
    started = time.perf_counter()
    loaded = load_yaml_text("\n".join(lines) + "\n", "f.yaml")
    assert time.perf_counter() - started < 2
    assert loaded.data["b11"] == {f"k{level}": level for level in range(12)}
    assert loaded.problems == []


def test_aliases_may_repeat_blocks_up_to_the_limit() -> None:
    block = "[" + ", ".join(str(n) for n in range(1000)) + "]"
    text = f"shared: &shared {block}\nuses: [" + ", ".join(["*shared"] * 90) + "]\n"
    loaded = load_yaml_text(text, "f.yaml")
    assert len(loaded.data["uses"]) == 90 and loaded.data["uses"][89][999] == 999
    assert loaded.problems == []


def test_very_deep_nesting_is_a_problem() -> None:
    (problem,) = problems_of("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in problem.message


# encodings


def test_a_file_that_is_not_utf8_is_a_problem_at_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "refsync.yaml"
    path.write_bytes("version: 1\nname: café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    (problem,) = info.value.problems
    assert str(problem) == f"{path}:2:10: not UTF-8 (byte 0xe9) — save the file as UTF-8"


def test_a_secret_file_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x30\x82\x04\xa3")
    text = CONFIG.replace("${PS_SECRET}", f"file:{secret}")
    problems = config_problems(tmp_path, text, {})
    assert [(p.line, p.column) for p in problems] == [(8, 19)]
    assert f"secret file {secret} is not UTF-8 text (byte 0x82" in problems[0].message


def test_a_control_character_is_a_problem_at_its_position() -> None:
    (problem,) = problems_of("a: 1\nb: x\x01y\n")
    assert (problem.line, problem.column) == (2, 5)
    assert "control character (0x01)" in problem.message


# syntax errors: the line a person should look at, and the other one named


def test_unclosed_quote_points_at_the_quote_not_where_parsing_gave_up() -> None:
    text = 'logging:\n  level: "info\n  format: auto\nsystems:\n  x: "1"\n'
    (problem,) = problems_of(text)
    assert (problem.line, problem.column) == (2, 10)
    assert "quoted value that starts here runs on to line 5" in problem.message
    assert problem.fix == "close the quote on this line"


def test_unclosed_flow_mapping_points_at_its_brace_and_names_where_parsing_failed() -> None:
    text = "rules:\n  customers_from: {system: salesforce, object: Account\n  other: 1\nx: 2\n"
    (problem,) = problems_of(text)
    assert (problem.line, problem.column) == (2, 19)
    assert "at line 3, column 8, in the {...} mapping that starts here" in problem.message
    assert problem.fix.startswith("close it with }")


def test_key_without_colon_points_at_the_key() -> None:
    (problem,) = problems_of("fields:\n  email: Email\n  company\n  phone: Phone\n")
    assert (problem.line, problem.column) == (3, 3)
    assert "could not find expected ':' at line 4" in problem.message


def test_bad_indentation_points_at_the_line_and_names_the_mapping_it_breaks() -> None:
    text = "version: 1\nsystems:\n  hubspot:\n    role: crm\n   settings: x\n"
    (problem,) = problems_of(text)
    assert (problem.line, problem.column) == (5, 4)
    assert problem.message.endswith("(the mapping that started at line 3)")
    assert "indent this line" in problem.fix



@pytest.mark.parametrize("line", ["        object Lead", "       object: Lead"])
def test_a_nested_key_missing_its_colon_or_under_indented_points_at_its_line(line: str) -> None:
    # a plain value goes on over the more indented next line, where PyYAML gives up
    text = ("systems:\n  crm:\n    streams:\n      leads:\n" + line
            + "\n        direction: both\n")
    (problem,) = problems_of(text)
    assert problem.line == 5
    assert problem.message == ("not valid YAML: the value that starts here runs on to line 6, "
                               "where a ':' follows it")
    assert problem.fix == ("if line 5 holds a key, write a ':' and a space after it "
                           "(key: value); otherwise indent line 6 like the keys beside it")


def test_a_first_key_not_indented_under_its_empty_parent_is_the_line_to_indent() -> None:
    # values: holds nothing, so "submitted" goes on over the more indented line 4
    text = """\
        status:
          values:
          Open - Not Contacted: submitted
            Working - Contacted: accepted
        """
    (problem,) = problems_of(text)
    assert (problem.line, problem.column) == (3, 3)
    assert problem.message == (
        "not valid YAML: the key here is not indented under 'values' (line 2), so YAML reads "
        "'values' as empty, and the value after this key runs on to line 4, where a ':' "
        "follows it")
    assert problem.fix == "indent line 3 like line 4, under 'values'"


def test_a_key_less_indented_than_the_lines_around_it_is_named_first() -> None:
    text = """\
        values:
          a: submitted
        b: accepted
          c: qualified
        """
    (problem,) = problems_of(text)
    assert (problem.line, problem.column) == (3, 1)
    assert problem.message == ("not valid YAML: the key here is less indented than the lines "
                               "above and below it, and its value runs on to line 4, where a "
                               "':' follows it")
    assert problem.fix == ("indent line 3 like the lines around it; or, if line 3 is where it "
                           "belongs, indent line 4 like it")


def test_a_line_indented_too_far_under_a_key_with_a_value_is_the_line_to_indent() -> None:
    (problem,) = problems_of("status:\n  remote: Status\n  rule: remote_wins\n"
                             "    direction: in\n")
    assert (problem.line, problem.column) == (3, 9)
    assert problem.fix.endswith("otherwise indent line 4 like the keys beside it")


# ${...} references


def test_an_empty_variable_takes_the_default_like_the_shell() -> None:
    loaded = load_yaml_text("url: ${URL:-https://example.test}\n", "f.yaml",
                            environ={"URL": ""}, resolve_references=True)
    assert loaded.data == {"url": "https://example.test"}
    assert loaded.problems == []


def test_an_empty_variable_without_default_is_reported_like_an_unset_one(tmp_path: Path) -> None:
    problems = config_problems(tmp_path, CONFIG, {"PS_SECRET": ""})
    assert [(p.line, p.column) for p in problems] == [(8, 19)]
    assert problems[0].message == "environment variable PS_SECRET is set but empty"
    assert "${PS_SECRET:-default}" in problems[0].fix


@pytest.mark.parametrize("written, message, fix", [
    ("${PS_SECRET", "'${PS_SECRET' is not a complete reference", "close it with }"),
    ("${PS_SECRET:x}", "'${PS_SECRET:x}' is not a valid reference",
     "write ${PS_SECRET:-x} to give a default"),
    ("${1PS}", "'${1PS}' is not a valid reference", "write ${NAME} or ${NAME:-default}"),
])
def test_a_malformed_reference_is_a_problem(
    tmp_path: Path, written: str, message: str, fix: str
) -> None:
    text = CONFIG.replace("${PS_SECRET}", written)
    problems = config_problems(tmp_path, text, {"PS_SECRET": "x"})
    assert [(p.line, p.column, p.message) for p in problems] == [(8, 19, message)]
    assert problems[0].fix.startswith(fix)


def test_plain_keys_are_kept_as_written(tmp_path: Path) -> None:
    loaded = load_yaml(write(tmp_path, "yes: 1\nno: 2\non: 3\n07: 4\n~: 5\n", "f.yaml"))
    assert loaded.data == {"yes": 1, "no": 2, "on": 3, "07": 4, "~": 5}


def test_a_key_written_twice_keeps_the_last_writing_and_what_the_earlier_ones_held() -> None:
    loaded = load_yaml_text(textwrap.dedent("""\
        values:
          a: text
          b: 1
          a: '07'
          a: 07
        out: {s: a, t: [x]}
        out: 3
        """), "f.yaml")
    assert loaded.data == {"values": {"a": 7, "b": 1}, "out": 3}
    assert sorted((p.line, p.message) for p in loaded.problems) == [
        (4, "key 'a' appears twice"), (5, "key 'a' appears 3 times"),
        (7, "key 'out' appears twice")]
    assert loaded.source.overwritten == {("values", "a"): ["text", "07"], ("out",): [{"s": "a"}]}


@pytest.mark.timeout(30)
def test_an_overwritten_writing_is_not_expanded() -> None:
    # a "billion laughs" whose every block is a writing of z the next one overwrites
    blocks = [line.split(":", 1)[1] for line in nested_aliases(9).splitlines()]
    text = "".join(f"z:{block}\n" for block in blocks) + "z: 1\n"
    started = time.perf_counter()
    loaded = load_yaml_text(text, "f.yaml")
    assert time.perf_counter() - started < 2
    assert loaded.data == {"z": 1}
    assert loaded.source.overwritten == {("z",): [None] * 9}
