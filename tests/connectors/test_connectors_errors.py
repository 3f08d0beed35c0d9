"""The error classification table: facts → action → exception, as data."""

from __future__ import annotations

import json

import pytest

from refsync.connectors.errors import (
    DEFAULT_TABLE,
    Action,
    ErrorFacts,
    ErrorRule,
    to_exception,
)
from refsync.errors import (
    AuthExpiredError,
    FatalConnectorError,
    QuotaExhaustedError,
    RateLimitedError,
    RecordError,
    RetryableError,
)


@pytest.mark.parametrize(
    ("facts", "action"),
    [
        (ErrorFacts(status=None, code="timeout"), Action.RETRY),
        (ErrorFacts(status=None, code="connection_error"), Action.RETRY),
        (ErrorFacts(status=500), Action.RETRY),
        (ErrorFacts(status=503), Action.RETRY),
        (ErrorFacts(status=408), Action.RETRY),
        (ErrorFacts(status=429), Action.RATE_LIMITED),
        (ErrorFacts(status=429, code="TEN_SECONDLY_ROLLING"), Action.RATE_LIMITED),
        (ErrorFacts(status=429, code="DAILY"), Action.QUOTA_EXHAUSTED),
        (ErrorFacts(status=403, code="REQUEST_LIMIT_EXCEEDED", message="ConcurrentPerOrgLongTxn"),
         Action.RATE_LIMITED),
        (ErrorFacts(status=403, code="REQUEST_LIMIT_EXCEEDED",
                    message="TotalRequests Limit exceeded."), Action.QUOTA_EXHAUSTED),
        (ErrorFacts(status=401, code="INVALID_SESSION_ID"), Action.REFRESH_AUTH),
        (ErrorFacts(status=401), Action.REFRESH_AUTH),
        (ErrorFacts(status=403, code="INSUFFICIENT_ACCESS"), Action.FATAL),
        (ErrorFacts(status=404), Action.FATAL),
        (ErrorFacts(status=400, code="MALFORMED_QUERY"), Action.FATAL),
        (ErrorFacts(status=400, code="INVALID_FIELD", fields=("X__c",)), Action.FATAL),
        (ErrorFacts(status=400, code="REQUIRED_FIELD_MISSING"), Action.RECORD_ERROR),
        (ErrorFacts(status=400, code="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
         Action.RECORD_ERROR),
        (ErrorFacts(status=400, code="STRING_TOO_LONG"), Action.RECORD_ERROR),
        (ErrorFacts(status=400, code="DUPLICATES_DETECTED"), Action.RECORD_ERROR),
        (ErrorFacts(status=400, code="FIELD_CUSTOM_VALIDATION_EXCEPTION"), Action.RECORD_ERROR),
        (ErrorFacts(status=400, code="INVALID_OPTION"), Action.RECORD_ERROR),
        (ErrorFacts(status=400, code="VALIDATION_ERROR"), Action.RECORD_ERROR),
        (ErrorFacts(code="INVALID_VALUE"), Action.RECORD_ERROR),
        (ErrorFacts(status=409), Action.RECORD_ERROR),
        (ErrorFacts(status=400, code="SOMETHING_NEW"), Action.FATAL),
        (ErrorFacts(status=302), Action.FATAL),
    ],
)
def test_classification_table(facts: ErrorFacts, action: Action) -> None:
    assert DEFAULT_TABLE.classify(facts, system="crm").action is action


@pytest.mark.parametrize(
    ("action", "exception_type"),
    [
        (Action.RETRY, RetryableError),
        (Action.RATE_LIMITED, RateLimitedError),
        (Action.REFRESH_AUTH, AuthExpiredError),
        (Action.QUOTA_EXHAUSTED, QuotaExhaustedError),
        (Action.FATAL, FatalConnectorError),
        (Action.RECORD_ERROR, RecordError),
    ],
)
def test_every_action_maps_to_its_exception(action: Action, exception_type: type) -> None:
    rule = ErrorRule(action, "{system} said {code}", code="X")
    table = DEFAULT_TABLE.extended([rule])
    found = table.classify(ErrorFacts(status=400, code="X", retry_after=3.0), system="crm")
    error = to_exception(found, system="crm")
    assert type(error) is exception_type
    assert error.message == "crm said X"
    if isinstance(error, RateLimitedError):
        assert error.retry_after == 3.0


def test_user_message_is_kept_apart_from_the_vendor_detail() -> None:
    facts = ErrorFacts(status=400, code="STRING_TOO_LONG", message="Company: data value too "
                       "large", fields=("Company",))
    error = to_exception(DEFAULT_TABLE.classify(facts, system="Salesforce"), system="Salesforce")
    assert isinstance(error, RecordError)
    assert error.message == (
        "value of Company is longer than Salesforce allows: shorten it with a truncate "
        "transform in the mapping"
    )
    assert error.detail == "Company: data value too large"
    assert error.field == "Company"


def test_vendor_rules_go_first() -> None:
    table = DEFAULT_TABLE.extended([ErrorRule(Action.RETRY, "flaky", status=400, code="BUSY")])
    assert table.classify(ErrorFacts(status=400, code="BUSY"), system="x").action is Action.RETRY
    assert table.classify(ErrorFacts(status=400, code="OTHER"), system="x").action is Action.FATAL


def test_unmatched_facts_are_fatal() -> None:
    from refsync.connectors.errors import ErrorTable

    found = ErrorTable(rules=()).classify(ErrorFacts(status=418, code="TEAPOT"), system="x")
    assert found.action is Action.FATAL
    assert "418 TEAPOT" in found.message


def test_an_unknown_failure_names_only_what_the_vendor_said() -> None:
    from refsync.connectors.errors import ErrorTable

    table = ErrorTable(rules=())
    without_status = ErrorFacts(code="ODD_THING", message="it went odd")
    assert table.classify(without_status, system="x").message == (
        "x failed unexpectedly (ODD_THING: it went odd)")
    assert table.classify(ErrorFacts(status=418), system="x").message == (
        "x failed unexpectedly (418)")
    assert table.classify(ErrorFacts(), system="x").message == "x failed unexpectedly"


def test_record_level_failures_never_ask_for_auth_or_quota() -> None:
    error = DEFAULT_TABLE.write_error(ErrorFacts(status=401, code="WEIRD"), system="x")
    assert error.action is Action.RECORD_ERROR
    picklist = DEFAULT_TABLE.write_error(
        ErrorFacts(code="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", fields=("Status",)), system="x"
    )
    assert picklist.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert picklist.fields == ("Status",)
    assert "Status" in picklist.message


def test_a_refused_option_names_the_value_the_system_refused() -> None:
    option = DEFAULT_TABLE.write_error(ErrorFacts(
        status=400, code="INVALID_OPTION", fields=("refsync_status",),
        message="sandbox-fail was not one of the allowed options: [submitted, accepted]"),
        system="hubspot")
    assert option.message.startswith(
        "value of refsync_status is not one of the allowed options (sandbox-fail was not one "
        "of the allowed options: [submitted, accepted]): add it to the value map")


def test_hubspot_facts_take_the_detailed_errors_own_message() -> None:
    from datetime import UTC, datetime

    from refsync.connectors.hubspot.transport import facts_from_hubspot_error

    detail = "maybe was not one of the allowed options: [submitted, accepted]"
    body = json.dumps({
        "status": "error", "category": "VALIDATION_ERROR",
        "message": f'Property values were not valid: [{{"message":"{detail}"}}]',
        "errors": [{"message": detail, "code": "INVALID_OPTION", "in": "refsync_status"}]})
    facts = facts_from_hubspot_error(400, {}, body, datetime.now(UTC))
    assert (facts.code, facts.message, facts.fields) == (
        "INVALID_OPTION", detail, ("refsync_status",))
