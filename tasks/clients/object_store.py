"""Sources on any filesystem fsspec knows: a local folder, `s3://bucket/prefix`, `gs://…`.

Credentials never come from a flow's parameters (they would be stored with every run): an
object store's client takes them from the platform's settings (`source_storage_options`), a
Prefect Secret block they name (`source_storage_secret`) or, when neither is set, from its
standard variables (`AWS_*`, `AWS_ENDPOINT_URL` for an S3-compatible server;
`GOOGLE_APPLICATION_CREDENTIALS`).
"""

from __future__ import annotations

from typing import Any

from tasks.clients.secrets import source_storage_options
from tasks.shared.settings import Settings


def is_url(location: str) -> bool:
    return "://" in location


def open_filesystem(location: str, settings: Settings) -> tuple[Any, str]:
    """(fsspec filesystem, path within it) for a folder or an object-store URL. The listing
    cache is off: a source is listed once per run and must see what changed since."""
    import fsspec

    options: dict[str, Any] = {}
    if is_url(location) and not location.startswith("file://"):
        options = {"skip_instance_cache": True, **source_storage_options(settings)}
    return fsspec.core.url_to_fs(location, **options)
