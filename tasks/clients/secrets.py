"""Secrets kept in Prefect (Secret blocks) rather than in the environment."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from tasks.shared.settings import Settings


def with_serving_key(settings: Settings) -> Settings:
    """Settings whose `serving_api_key` is filled from the Prefect Secret block named by
    `serving_api_key_secret` (a key set directly wins). Read once, by the process that deploys
    or calls the service; the Serve replicas get it with their settings."""
    name = settings.serving_api_key_secret
    if settings.serving_api_key is not None or not name:
        return settings
    value = _load(name, "the serving API key's")
    if not isinstance(value, str) or not value:
        raise ValueError(f"the Prefect secret {name!r} must hold a non-empty string key")
    return settings.model_copy(update={"serving_api_key": SecretStr(value)})


def source_storage_options(settings: Settings) -> dict[str, Any]:
    """fsspec options for object-store sources: the Prefect Secret block named by
    `source_storage_secret` (a JSON object), under `source_storage_options` set directly."""
    name = settings.source_storage_secret
    if not name:
        return dict(settings.source_storage_options)
    value = _load(name, "the source storage options'")
    if not isinstance(value, dict):
        raise ValueError(
            f"the Prefect secret {name!r} must hold a JSON object of fsspec options "
            '(e.g. {"key": ..., "secret": ..., "endpoint_url": ...})'
        )
    return {**value, **settings.source_storage_options}


def _load(name: str, what: str) -> Any:
    from prefect.blocks.system import Secret

    try:
        return Secret.load(name).get()
    except ValueError as exc:  # Prefect's "Unable to find block document named ..."
        raise ValueError(f"{what} Prefect secret {name!r}: {exc}") from None
