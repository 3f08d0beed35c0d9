"""Logging: JSON or console output, and secrets never reach a rendered line."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from refsync.logging import Redactor, configure_logging, get_logger, redactor, register_secret

CANARY = "canary-7f3a9c1e-secret"


@pytest.fixture(autouse=True)
def _reset_redactor() -> None:
    redactor.clear()


def test_canary_secret_never_appears_in_any_rendered_line() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", secrets=[CANARY], stream=stream)
    log = get_logger("test", run_id="run-1", system="salesforce", stream="leads")
    log.info("calling api", url=f"https://x.invalid/q?access_token={CANARY}")
    log.info(f"event text with {CANARY} inside", nested={"deep": [f"x{CANARY}y"]})
    log.info("credential fields", password="not-the-canary", authorization="Bearer abcdefghijk")
    try:
        raise RuntimeError(f"upstream said: invalid client secret {CANARY}")
    except RuntimeError:
        log.exception("call failed")
    logging.getLogger("urllib3.connectionpool").warning("retrying with %s", CANARY)
    output = stream.getvalue()
    assert CANARY not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) == 5
    assert all(line["run_id"] == "run-1" for line in lines[:4])
    assert "***" in lines[3]["exception"] and "RuntimeError" in lines[3]["exception"]
    assert lines[2]["password"] == "***" and lines[2]["authorization"] == "***"


def test_secrets_registered_at_run_time_are_masked() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    register_secret("00Dxx!AQ4AQFreshAccessToken")
    get_logger().info("got token 00Dxx!AQ4AQFreshAccessToken")
    assert "FreshAccessToken" not in stream.getvalue()


def test_console_format_is_readable_and_redacted() -> None:
    stream = io.StringIO()
    configure_logging(fmt="console", secrets=[CANARY], stream=stream)
    get_logger().warning("quota low", remaining=12, token=CANARY)
    line = stream.getvalue()
    assert "quota low" in line and "remaining" in line and CANARY not in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_auto_format_is_json_when_not_a_tty() -> None:
    stream = io.StringIO()
    configure_logging(fmt="auto", stream=stream)
    get_logger().info("hello")
    assert json.loads(stream.getvalue())["event"] == "hello"


def test_level_filters_lines() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level="warning", stream=stream)
    get_logger().info("hidden")
    get_logger().warning("shown")
    assert [json.loads(x)["event"] for x in stream.getvalue().splitlines()] == ["shown"]


def test_redactor_masks_token_shapes_without_configuration() -> None:
    plain = Redactor()
    assert plain.redact_text("Authorization: Bearer pat-na1-1234567890abcdef") == \
        "Authorization: Bearer ***"
    assert plain.redact({"client_secret": "x"}) == {"client_secret": "***"}
    assert plain.redact({"count": 3}) == {"count": 3}


def test_capture_logs_sees_bound_context() -> None:
    configure_logging(fmt="json", stream=io.StringIO())
    with structlog.testing.capture_logs() as captured:
        get_logger(run_id="r").info("page committed", records=200)
    assert captured[0]["event"] == "page committed" and captured[0]["records"] == 200
