"""Signing in to Salesforce: OAuth client credentials or JWT bearer, through our own session.

refsync requests the token itself (instead of letting simple-salesforce log in) so the token
call goes through the same session as every other call (timeouts, CA bundle, counting), works
against any host (a My Domain, a sandbox emulator, a proxy), and can be repeated when a session
expires, which simple-salesforce only does for its login-based modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
import requests

from refsync.connectors.http import raise_for_response, transport_error
from refsync.errors import FatalConnectorError, RetryableError
from refsync.logging import register_secret

__all__ = ["JWT_BEARER_GRANT", "SalesforceToken", "request_token"]

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class SalesforceToken:
    """An access token and the instance it is valid for."""

    access_token: str
    instance_url: str


def request_token(
    session: requests.Session,
    *,
    token_url: str,
    flow: str,
    consumer_key: str,
    consumer_secret: str | None,
    username: str | None,
    private_key: str | None,
    audience: str,
    clock: Callable[[], datetime],
    system: str,
) -> SalesforceToken:
    """Obtain an access token with the client-credentials or JWT bearer flow.

    The token (and the signed JWT assertion) are registered with the log redactor as soon as
    they exist, so neither can reach a log line, an error message or the state database.

    Raises:
        FatalConnectorError: the credentials were refused (says which setting to check), or
            the endpoint's TLS certificate could not be verified.
        RetryableError: the token endpoint failed transiently or could not be reached.
    """
    if flow == "jwt":
        if not username or not private_key:
            raise FatalConnectorError(
                f"{system}: JWT sign-in needs 'username' and 'private_key' (or "
                "'private_key_file') in the settings",
                system=system,
            )
        claims = {
            "iss": consumer_key,
            "sub": username,
            "aud": audience,
            "exp": int((clock() + timedelta(minutes=3)).timestamp()),
        }
        try:
            assertion = jwt.encode(claims, private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as error:
            # the library's text may quote the key: say what is wrong without it
            raise FatalConnectorError(
                f"{system}: the JWT private key is not a PEM RSA private key "
                f"({type(error).__name__}): give private_key_file the path of the connected "
                "app's PEM key file (-----BEGIN PRIVATE KEY-----), or private_key its contents",
                system=system,
                code="private_key",
            ) from None
        register_secret(assertion)
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
        auth = None
    else:
        if not consumer_secret:
            raise FatalConnectorError(
                f"{system}: client-credentials sign-in needs 'consumer_secret' in the settings",
                system=system,
            )
        form = {"grant_type": "client_credentials"}
        auth = (consumer_key, consumer_secret)
    try:
        response = session.post(token_url, data=form, auth=auth)
    except requests.RequestException as error:
        failure = transport_error(error, system=system, verify=session.verify)
        if not isinstance(failure, RetryableError):
            raise failure from error
        raise RetryableError(
            f"could not reach the {system} sign-in endpoint {token_url}",
            system=system,
            code=failure.code,
            detail=str(error),
        ) from error
    if response.status_code in (400, 401, 403):
        try:
            body = response.json()
        except ValueError:
            body = {}
        error_code = str(body.get("error", "")) if isinstance(body, dict) else ""
        description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        raise FatalConnectorError(
            f"{system} refused the sign-in ({error_code}: {description}): check consumer_key, "
            f"{'username and private_key' if flow == 'jwt' else 'consumer_secret'} and that "
            "the connected app allows this flow for the integration user",
            system=system,
            status=response.status_code,
            code=error_code or None,
        )
    raise_for_response(response, system=system, now=clock())
    body = response.json()
    token = SalesforceToken(
        access_token=str(body["access_token"]), instance_url=str(body["instance_url"])
    )
    register_secret(token.access_token)
    return token
