from prefect import flow

from tasks.clients.releases import ReleasedVersion
from tasks.promote.params import ReleaseParams
from tasks.promote.tasks import publish_alias_history, release_task


@flow(name="release_model", flow_run_name="release-{params.model_name}", log_prints=True)
def release_model(params: ReleaseParams = ReleaseParams()) -> ReleasedVersion:  # noqa: B008
    """Release a version again with another instruction, top-k, limits or rails: a new version of
    the same files, made the challenger; the canary then rolls it out like a new model."""
    released = release_task(params)
    publish_alias_history(params.model_name)
    return released
