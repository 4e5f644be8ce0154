"""Secrets kept in Prefect (Secret blocks) rather than in the environment."""

from __future__ import annotations

from pydantic import SecretStr

from tasks.shared.settings import Settings


def with_serving_key(settings: Settings) -> Settings:
    """Settings whose `serving_api_key` is filled from the Prefect Secret block named by
    `serving_api_key_secret` (a key set directly wins). Read once, by the process that deploys
    or calls the service; the Serve replicas get it with their settings."""
    name = settings.serving_api_key_secret
    if settings.serving_api_key is not None or not name:
        return settings
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except ValueError as exc:  # Prefect's "Unable to find block document named ..."
        raise ValueError(f"the serving API key's Prefect secret {name!r}: {exc}") from None
    if not isinstance(value, str) or not value:
        raise ValueError(f"the Prefect secret {name!r} must hold a non-empty string key")
    return settings.model_copy(update={"serving_api_key": SecretStr(value)})
