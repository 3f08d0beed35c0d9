"""Who may call the HubSpot emulator: the private-app token and OAuth access tokens.

- The private-app token (``Authorization: Bearer pat-sandbox-refsync``) never expires.
- ``POST /oauth/v1/token`` with ``grant_type=refresh_token``, the sandbox client id/secret and
  refresh token issues an access token that expires after ``oauth_token_lifetime_s`` seconds
  (1,800 like HubSpot's); a call with an expired one gets 401 ``EXPIRED_AUTHENTICATION``.
- Anything else gets 401 ``INVALID_AUTHENTICATION`` with HubSpot's wording.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from refsync.sandbox.hubspot.errors import HubSpotApiError, error_body, new_correlation_id

__all__ = ["OAUTH_CLIENT", "PRIVATE_APP_TOKEN", "TokenBook"]

PRIVATE_APP_TOKEN = "pat-sandbox-refsync"

#: fixed OAuth app credentials of the sandbox (documented test values, not secrets)
OAUTH_CLIENT = {
    "client_id": "sandbox-client-id",
    "client_secret": "sandbox-client-secret",
    "refresh_token": "sandbox-refresh-token",
}

_INVALID_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


class TokenBook:
    """Issued OAuth access tokens and the check every API call goes through.

    Args:
        now: epoch seconds (inject a fake in tests to expire tokens without waiting).
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._serial = itertools.count(1)
        self.oauth_token_lifetime_s = 1800

    def reset(self) -> None:
        """Forget every issued access token."""
        with self._lock:
            self._tokens.clear()

    def authenticate(self, authorization: str | None) -> bool:
        """Check an ``Authorization`` header; return whether the caller is the private app.

        Raises:
            HubSpotApiError: 401 for a missing, unknown or expired token.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HubSpotApiError(401, error_body(_INVALID_MESSAGE, "INVALID_AUTHENTICATION"))
        token = token.strip()
        if token == PRIVATE_APP_TOKEN:
            return True
        with self._lock:
            expires_at = self._tokens.get(token)
        if expires_at is None:
            raise HubSpotApiError(401, error_body(_INVALID_MESSAGE, "INVALID_AUTHENTICATION"))
        now = self._now()
        if now >= expires_at:
            raise self.expired_error(int(now - expires_at))
        return False

    @staticmethod
    def expired_error(seconds_ago: int = 0) -> HubSpotApiError:
        """The 401 HubSpot sends for an expired OAuth access token."""
        return HubSpotApiError(401, error_body(
            f"The OAuth token used to make this call expired {seconds_ago} second(s) ago.",
            "EXPIRED_AUTHENTICATION",
        ))

    def refresh(self, form: dict[str, str]) -> dict[str, Any]:
        """Answer ``POST /oauth/v1/token`` (refresh-token grant only).

        Raises:
            HubSpotApiError: 400 for a wrong grant type, client or refresh token.
        """
        if form.get("grant_type") != "refresh_token":
            raise HubSpotApiError(400, {
                "status": "BAD_GRANT_TYPE",
                "message": "grant_type must be refresh_token in the sandbox",
                "correlationId": new_correlation_id(),
            })
        if (form.get("client_id") != OAUTH_CLIENT["client_id"]
                or form.get("client_secret") != OAUTH_CLIENT["client_secret"]):
            raise HubSpotApiError(400, {
                "status": "BAD_CLIENT_ID",
                "message": "missing or invalid client_id or client_secret",
                "correlationId": new_correlation_id(),
            })
        if form.get("refresh_token") != OAUTH_CLIENT["refresh_token"]:
            raise HubSpotApiError(400, {
                "status": "BAD_REFRESH_TOKEN",
                "message": "missing or unknown refresh token",
                "correlationId": new_correlation_id(),
            })
        token = f"oauth-sandbox-{next(self._serial):06d}"
        lifetime = self.oauth_token_lifetime_s
        with self._lock:
            self._tokens[token] = self._now() + lifetime
        return {
            "token_type": "bearer",
            "refresh_token": OAUTH_CLIENT["refresh_token"],
            "access_token": token,
            "expires_in": lifetime,
        }
