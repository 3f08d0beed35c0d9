"""Logging: JSON or console output, and secrets never reach a rendered line."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from refsync.logging import (
    ISSUED_SECRETS_KEPT,
    Redactor,
    configure_logging,
    get_logger,
    log_context,
    redact_text,
    redactor,
    register_secret,
)

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


def test_json_pairs_session_ids_and_pem_keys_are_masked_without_registration() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level="debug", stream=stream)
    log = get_logger()
    log.info("x", detail="got session 00DSANDBOX0000001!AbCdEfGhIjKlMnOp_qr-st.uv ok")
    log.info("x", detail='{"access_token": "abcDEF123456789xyz", "expires_in": 1800}')
    log.info("x", detail="{'client_secret': 'shh-its-a-secret', 'client_id': 'app'}")
    log.info("x", detail="grant_type=jwt&assertion=eyJhbGciOi.eyJpc3Mi.c2lnbmF0dXJl")
    log.info("x", detail="No such file: '-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADAN\\n"
                         "-----END PRIVATE KEY-----\\n'")
    output = stream.getvalue()
    for leaked in ("AbCdEfGhIjKlMnOp", "abcDEF123456789xyz", "shh-its-a-secret", "eyJpc3Mi",
                   "MIIEvQIBADAN", "BEGIN PRIVATE KEY"):
        assert leaked not in output, leaked
    assert "'client_id': 'app'" in output, "only the credential is masked"
    assert "expires_in" in output and "1800" in output


def test_a_multi_line_secret_is_masked_escaped_and_line_by_line() -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIB\n" \
          "-----END PRIVATE KEY-----\n"
    register_secret(key)
    assert "MIIEvQIBADANBgkq" not in redact_text(f"FileNotFoundError: {key!r}")
    assert "MIIEvQIBADANBgkq" not in redact_text(json.dumps({"detail": key}))
    assert redact_text("line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC seen") == "line *** seen"


def test_redact_text_masks_what_a_log_line_masks() -> None:
    configure_logging(fmt="json", secrets=[CANARY], stream=io.StringIO())
    register_secret("oauth-access-token-0001")
    text = (f"denied ({CANARY}); token oauth-access-token-0001; "
            "Authorization: Bearer pat-na1-0123456789abcdef")
    assert redact_text(text) == "denied (***); token ***; Authorization: Bearer ***"


def test_tokens_issued_at_run_time_are_kept_within_a_bound() -> None:
    configure_logging(fmt="json", secrets=[CANARY], stream=io.StringIO())
    for serial in range(ISSUED_SECRETS_KEPT + 10):
        register_secret(f"renewed-token-{serial:06d}")
    newest = f"renewed-token-{ISSUED_SECRETS_KEPT + 9:06d}"
    assert redact_text(newest) == "***"
    assert redact_text("renewed-token-000000") == "renewed-token-000000", "the oldest is dropped"
    assert redact_text(CANARY) == "***", "configuration secrets are never dropped"


def test_a_lasting_credential_registered_at_run_time_is_never_dropped() -> None:
    configure_logging(fmt="json", stream=io.StringIO())
    register_secret("key-file-contents-0001", expires=False)
    for serial in range(ISSUED_SECRETS_KEPT + 1):
        register_secret(f"renewed-token-{serial:06d}")
    assert redact_text("key-file-contents-0001") == "***"


def test_log_context_reaches_every_logger_and_ends_with_the_block() -> None:
    from refsync.connectors.base import ConnectorContext

    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    connector_log = ConnectorContext(system="hubspot").logger
    with log_context(run_id="run-7", job="sync"):
        connector_log.warning("hubspot_call_failed", status=503)
        logging.getLogger("urllib3.connectionpool").warning("retrying")
        with log_context(run_id="run-8"):
            get_logger().info("nested")
        get_logger("refsync.sync", run_id="explicit").info("bound wins")
    get_logger().info("after")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["run_id"] == "run-7" and lines[0]["system"] == "hubspot"
    assert lines[0]["job"] == "sync"
    assert lines[1]["run_id"] == "run-7"
    assert lines[2]["run_id"] == "run-8"
    assert lines[3]["run_id"] == "explicit"
    assert "run_id" not in lines[4]
