"""OAuth for the Salesforce emulator: client credentials, JWT bearer, and session tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt

from refsync.sandbox.core import SANDBOX_CREDENTIALS

__all__ = ["OAuthError", "TokenIssuer"]

_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class OAuthError(Exception):
    """A refused token request: answered 400 ``{"error", "error_description"}``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        """Return the OAuth error body."""
        return {"error": self.error, "error_description": self.description}


@dataclass
class TokenIssuer:
    """Issues and checks access tokens.

    Attributes:
        lifetime: how long a token stays valid.
        jwt_public_key: PEM public key; when set, JWT bearer assertions must be signed with the
            matching private key (RS256). Unset, any well-formed assertion from the right
            ``iss`` is accepted.
    """

    lifetime: timedelta = timedelta(hours=2)
    jwt_public_key: str | None = None
    consumer_key: str = SANDBOX_CREDENTIALS["salesforce"]["consumer_key"]
    consumer_secret: str = SANDBOX_CREDENTIALS["salesforce"]["consumer_secret"]
    tokens: dict[str, datetime] = field(default_factory=dict)

    def grant(self, form: dict[str, str], basic: tuple[str, str] | None, now: datetime) -> str:
        """Check a token request and return a new access token.

        Raises:
            OAuthError: unsupported grant type, wrong client, bad assertion.
        """
        grant_type = form.get("grant_type", "")
        if grant_type == "client_credentials":
            client_id, client_secret = basic or (
                form.get("client_id", ""), form.get("client_secret", ""))
            if not (secrets.compare_digest(client_id, self.consumer_key)
                    and secrets.compare_digest(client_secret, self.consumer_secret)):
                raise OAuthError("invalid_client", "invalid client credentials")
        elif grant_type == _JWT_BEARER:
            self._check_assertion(form.get("assertion", ""), now)
        elif grant_type:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        else:
            raise OAuthError("invalid_request", "grant_type is required")
        token = "00DSANDBOX0000001!" + secrets.token_urlsafe(32)
        self.tokens[token] = now + self.lifetime
        return token

    def _check_assertion(self, assertion: str, now: datetime) -> None:
        try:
            if self.jwt_public_key:
                claims: dict[str, Any] = jwt.decode(
                    assertion, self.jwt_public_key, algorithms=["RS256"],
                    options={"verify_aud": False, "verify_exp": False})
            else:
                claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_grant", f"invalid assertion: {exc}") from exc
        if claims.get("iss") != self.consumer_key:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not claims.get("sub"):
            raise OAuthError("invalid_grant", "invalid assertion: sub is required")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp < now.timestamp():
            raise OAuthError("invalid_grant", "expired authorization code")

    def valid(self, token: str, now: datetime) -> bool:
        """Return True when ``token`` was issued here and has not expired."""
        expires = self.tokens.get(token)
        return expires is not None and now < expires

    def expire_all(self) -> int:
        """Invalidate every token (a session timeout for everyone); return how many."""
        count = len(self.tokens)
        self.tokens.clear()
        return count
