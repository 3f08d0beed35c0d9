"""Settings of a ``hubspot`` system: where the portal is, how refsync signs in, how it pages."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from refsync.connectors.base import HttpConnectorSettings
from refsync.validation import InvalidValueError

__all__ = ["DEFAULT_HUBSPOT_URL", "HubSpotSettings"]

DEFAULT_HUBSPOT_URL = "https://api.hubapi.com"


class HubSpotSettings(HttpConnectorSettings):
    """Settings of a ``hubspot`` system.

    Give either a private-app ``access_token`` (it never expires) or the three OAuth values
    ``client_id``, ``client_secret`` and ``refresh_token`` (refsync then fetches 30-minute
    access tokens itself and renews them before they expire).
    """

    access_token: SecretStr | None = Field(default=None, description="private-app token")
    client_id: str | None = Field(default=None, description="OAuth app client id")
    client_secret: SecretStr | None = Field(default=None, description="OAuth app client secret")
    refresh_token: SecretStr | None = Field(default=None, description="OAuth refresh token")
    refresh_margin_seconds: float = Field(
        default=300.0, ge=0, description="renew an OAuth access token this long before it expires"
    )
    search_page_size: int = Field(default=200, ge=1, le=200, description="records per search")
    list_page_size: int = Field(default=100, ge=1, le=100, description="records per list page")
    batch_size: int = Field(default=100, ge=1, le=100, description="records per batch/upsert")
    search_result_cap: int = Field(
        default=10_000,
        ge=2,
        le=10_000,
        description="results one search query may page through before refsync re-anchors it",
    )
    modstamp_property: str = Field(
        default="hs_lastmodifieddate", description="property incremental reads follow"
    )
    rate_limit_max: int = Field(
        default=100, ge=1, description="calls per burst window until HubSpot's headers say more"
    )
    rate_limit_interval_seconds: float = Field(default=10.0, gt=0)
    search_per_second: float = Field(
        default=4.0, gt=0, description="search calls per second (HubSpot's separate limit)"
    )
    check_objects: list[str] = Field(
        default_factory=lambda: ["contacts"], description="object types check() verifies"
    )
    key_property: str = Field(
        default="refsync_id", description="the unique property writes upsert by"
    )

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> Self:
        oauth = [self.client_id, self.client_secret, self.refresh_token]
        if self.access_token is not None and any(v is not None for v in oauth):
            raise InvalidValueError(
                "HubSpot settings give both an access_token (private app) and OAuth "
                "credentials (client_id, client_secret, refresh_token)",
                "keep one way to sign in: remove access_token, or the three OAuth settings"
            )
        if self.access_token is None and not all(v is not None for v in oauth):
            raise InvalidValueError(
                "HubSpot needs credentials",
                "set access_token (private app), or all of client_id, client_secret and "
                "refresh_token (OAuth), each from the environment or a file"
            )
        return self

    @property
    def uses_oauth(self) -> bool:
        """True when refsync signs in with the OAuth refresh-token flow."""
        return self.access_token is None

    @property
    def api_url(self) -> str:
        """The API host, without a trailing slash."""
        return (self.base_url or DEFAULT_HUBSPOT_URL).rstrip("/")

    def effective_search_page_size(self) -> int:
        """Search page size, lowered to ``page_size`` when that generic setting is given."""
        return min(self.search_page_size, self.page_size or self.search_page_size)

    def effective_list_page_size(self) -> int:
        """List page size, lowered to ``page_size`` when that generic setting is given."""
        return min(self.list_page_size, self.page_size or self.list_page_size)
