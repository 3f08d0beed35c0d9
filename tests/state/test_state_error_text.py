"""What a run's error says of a database error: the driver's first line, never the statement
or its parameters (which can hold a page's prospect data)."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import IntegrityError

from refsync.state.outage import error_text


def test_a_database_error_is_told_by_the_drivers_first_line() -> None:
    error = IntegrityError(
        "INSERT INTO referral (id, email) VALUES (?, ?)", ("r-1", "pat@prospect.example"),
        sqlite3.IntegrityError("UNIQUE constraint failed: referral.id"))
    assert "pat@prospect.example" in str(error)  # what a run's error used to say
    assert error_text(error) == "IntegrityError: UNIQUE constraint failed: referral.id"


def test_any_other_error_is_told_by_its_type_and_first_line() -> None:
    assert error_text(ValueError("bad value\nmore detail")) == "ValueError: bad value"
