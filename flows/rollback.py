from prefect import flow

from tasks.clients.registry import AliasChange
from tasks.promote.params import RollbackParams
from tasks.promote.tasks import publish_alias_history, rollback_task


@flow(name="rollback_model", flow_run_name="rollback-{params.model_name}", log_prints=True)
def rollback_model(params: RollbackParams = RollbackParams()) -> AliasChange:  # noqa: B008
    """Put the previous champion back in service in one step; the change is recorded."""
    change = rollback_task(params.model_name, params.reason, params.requested_by)
    publish_alias_history(params.model_name)
    return change
