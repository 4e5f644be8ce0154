"""Serve control: the serving application on Ray Serve, deployed and re-weighted from a flow,
and its router reached over HTTP.

The application itself lives in `serving/` (a long-running process that imports `tasks`, never
the reverse). It is addressed here by import path, as a RayService's `import_path` names it,
so no task imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import httpx

from tasks.shared.settings import Settings

DEPLOY = "serving.app:deploy"  # (settings, model_name, weights, name=, **options) -> handle


class ServeControl:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def http(self, url: str, timeout: float = 60) -> httpx.Client:
        """A client for the router at `url`, with the serving API key when one is set."""
        key = self.settings.serving_api_key
        headers = {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        return httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def served_versions(self, url: str) -> list[str]:
        """The versions the router at `url` serves ([] when nothing answers)."""
        try:
            with self.http(url) as client:
                models = client.get("/v1/models").raise_for_status().json()["data"][0]
        except (httpx.HTTPError, KeyError, IndexError):
            return []
        return [v["version"] for v in models["versions"]]

    def runs_here(self, app_name: str) -> bool:
        """Whether the Ray this process is connected to runs the application."""
        from ray import serve

        try:
            return app_name in serve.status().applications
        except Exception:  # no Serve controller on this Ray
            return False

    def start(self, url: str) -> None:
        """Serve's HTTP proxy on the host and port of `url` (a no-op when it already runs)."""
        from ray import serve

        parsed = httpx.URL(url)
        serve.start(http_options={"host": parsed.host, "port": parsed.port or 80})

    def deploy(
        self, model_name: str, weights: Mapping[str, float], app_name: str, **options: Any
    ) -> None:
        """Start the application (to add versions to a running one, `add_versions`)."""
        module, _, function = DEPLOY.partition(":")
        deploy = getattr(importlib.import_module(module), function)
        deploy(self.settings, model_name, weights, name=app_name, **options)

    def set_weights(self, weights: Mapping[str, float], app_name: str) -> dict[str, float]:
        """Change the running application's split in place (the router swaps one dict: no
        replica restarts, no request is dropped). Its router runs one replica, which this
        call reaches."""
        from ray import serve

        handle = serve.get_app_handle(app_name)
        return handle.set_weights.remote(dict(weights)).result()

    def set_shadow(self, shadow: Mapping[str, float], app_name: str) -> dict[str, float]:
        """Mirror {version: percent} of live requests to versions users get no answer from
        ({} stops it); the router's shadow afterwards."""
        from ray import serve

        handle = serve.get_app_handle(app_name)
        return handle.set_shadow.remote(dict(shadow)).result()

    def add_versions(self, versions: list[str], app_name: str) -> list[str]:
        """Load versions beside the running ones, at weight 0 (nothing is redeployed); the
        versions served afterwards."""
        from ray import serve

        router = serve.get_app_handle(app_name)
        for version in versions:
            router.add_version.remote(str(version)).result()
        return list(router.served.remote().result())
