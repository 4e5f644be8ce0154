"""Each served version is a Serve application of its own, `<app>-v<version>`, beside the
router's: adding one deploys only it (loaded and warmed up before the router routes to it), and
releasing one deletes only it. The router and the versions already loaded are never redeployed,
so nothing warm is dropped and no request meets a rolling update.

The router calls these from its replica (Serve's controller takes deploys from inside the
cluster as from a driver); they block while a model loads, so the router runs them in a thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from serving.model import ModelServer
from serving.options import ModelOptions
from tasks.shared.settings import Settings

logger = logging.getLogger(__name__)


def version_app(app_name: str, version: str) -> str:
    return f"{app_name}-v{version}"


class Versions:
    """The model applications of one router app: load, look up, release."""

    def __init__(
        self, settings: Settings, model_name: str, app_name: str, options: ModelOptions
    ) -> None:
        self.settings, self.model_name = settings, model_name
        self.app_name, self.options = app_name, options

    def load(self, version: str) -> DeploymentHandle:
        """A handle to the version's application, deployed first unless it runs already (a
        router that restarts adopts the versions that kept running)."""

        name = version_app(self.app_name, version)
        if self._status(name) == "RUNNING":
            return serve.get_app_handle(name)
        deadline = time.monotonic() + 120
        while self._status(name) == "DELETING":  # released a moment ago: let it go first
            if time.monotonic() > deadline:
                raise TimeoutError(f"application {name} is still being deleted")
            time.sleep(0.2)
        logger.info("loading version %s as application %s", version, name)
        server = ModelServer.options(name=f"model-v{version}", **self.options.deployment())
        server = server.bind(self.settings, self.model_name, version, self.app_name, self.options)
        return serve.run(server, name=name, route_prefix=None)

    def release(self, version: str) -> None:
        """Delete the version's application without waiting (its replicas drain first)."""
        logger.info("releasing version %s", version)
        serve.delete(version_app(self.app_name, version), _blocking=False)

    def _status(self, name: str) -> str | None:
        """RUNNING, DEPLOYING, DELETING, … (a str enum), or None when there is no such app."""
        apps: dict[str, Any] = serve.status().applications
        return apps[name].status if name in apps else None
