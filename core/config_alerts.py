"""The `alerts:` section of `driftloop.yaml`: where alerts go (signed webhooks, Prefect blocks)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import AlertError


class AlertConfig(BaseModel):
    """The `alerts:` section of the project config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhooks: list[str] = Field(
        default_factory=list, description="URLs that receive signed JSON alerts"
    )
    secret_env: str = Field(
        "DRIFTLOOP_WEBHOOK_SECRET",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the HMAC secret (never the secret itself)",
    )
    timeout_s: float = Field(5.0, gt=0, le=120, description="seconds per delivery attempt")
    retries: int = Field(
        3, ge=0, le=10, description="extra attempts on 5xx, 429 or connection errors"
    )
    backoff_s: float = Field(
        0.5, ge=0, le=60, description="first retry delay; doubles each attempt"
    )
    prefect_blocks: list[str] = Field(
        default_factory=list,
        description='Prefect notification blocks as "type-slug/name", e.g. "slack-webhook/ops"',
    )
    deliver_warnings: bool = Field(
        False,
        description="also deliver warnings (drift that does not hurt) to webhooks and blocks; "
        "by default they are recorded and shown on dashboards and gauges only",
    )

    @field_validator("webhooks")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        bad = [
            u for u in urls if httpx.URL(u).scheme not in {"http", "https"} or not httpx.URL(u).host
        ]
        if bad:
            raise ValueError(f"webhooks must be http(s) URLs with a host, got {bad}")
        return urls

    @field_validator("prefect_blocks")
    @classmethod
    def _block_refs(cls, refs: list[str]) -> list[str]:
        bad = [r for r in refs if r.count("/") != 1 or not all(r.split("/"))]
        if bad:
            raise ValueError(
                'prefect_blocks must look like "block-type-slug/block-name" '
                f'(e.g. "slack-webhook/ops"), got {bad}'
            )
        return refs

    def secret(self, environ: Mapping[str, str] | None = None) -> str:
        """The webhook secret, read from the environment when called.

        Raises:
            AlertError: webhooks are configured but the variable is unset or empty.
        """
        env = os.environ if environ is None else environ
        value = env.get(self.secret_env, "")
        if not value:
            raise AlertError(
                f"alerts.webhooks is set but the environment variable {self.secret_env} is empty; "
                f"export a random secret in {self.secret_env} and share it with the receiver"
            )
        return value
