"""Access control on the registry: `mlflow server --app-name basic-auth` started here, a user
granted EDIT on the model and one left with READ. Moving an alias records the authenticated
user (not a typed name); the read-only user is refused with nothing changed; a wrong password
is refused before anything is tried."""

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.server import get_app_client

from tasks.clients.registry import model_registry
from tasks.core.promotion import CHAMPION
from tasks.shared.settings import Settings, get_settings

from services import Server, mlflow_server

pytestmark = pytest.mark.integration
MODEL = "guarded"
USERS = {"alice": "alice-password-123", "reader": "reader-password-123"}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow-auth"), auth=True) as server:
        print(f"mlflow basic-auth server healthy after {server.start_s:.1f} s")
        with pytest.MonkeyPatch.context() as patch:
            for key, value in server.env.items():  # the admin sets the registry up
                patch.setenv(key, value)
            users = get_app_client("basic-auth", tracking_uri=server.url)
            for user, password in USERS.items():
                users.create_user(user, password)
            client = mlflow.MlflowClient(tracking_uri=server.url, registry_uri=server.url)
            client.create_registered_model(MODEL)
            run = client.create_run(client.create_experiment("source")).info.run_id
            client.log_text(run, "weights", "model/weights.txt")
            for _ in range(2):
                client.create_model_version(MODEL, f"runs:/{run}/model", run_id=run)
            users.grant_user_permission("alice", "registered_model", MODEL, "EDIT")
        yield server


def as_user(tracking: Server, tmp_path: Path, monkeypatch, user: str, password: str) -> Settings:
    monkeypatch.setenv("LLMOPS_MLFLOW_TRACKING_URI", tracking.url)
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    return get_settings()


def test_an_alias_change_records_the_authenticated_user(tracking, tmp_path, monkeypatch):
    registry = model_registry(as_user(tracking, tmp_path, monkeypatch, "alice", USERS["alice"]))
    assert registry.current_user() == "alice"
    change = registry.set_alias(
        MODEL, CHAMPION, "1", action="promote", reason="test", actor="Bob Typed-This"
    )
    assert change.actor == "alice (via Bob Typed-This)"
    assert registry.aliases(MODEL) == {CHAMPION: "1"}
    assert registry.history(MODEL)[-1].actor == "alice (via Bob Typed-This)"


def test_a_read_only_user_cannot_move_an_alias(tracking, tmp_path, monkeypatch):
    registry = model_registry(as_user(tracking, tmp_path, monkeypatch, "reader", USERS["reader"]))
    before = registry.aliases(MODEL)
    with pytest.raises(PermissionError, match=r"reader may not move guarded@champion"):
        registry.set_alias(MODEL, CHAMPION, "2", action="rollback", reason="x", actor="")
    assert registry.aliases(MODEL) == before  # nothing moved, nothing recorded
    assert all(c.version != "2" for c in registry.history(MODEL))


def test_a_wrong_password_is_refused_before_anything_is_tried(tracking, tmp_path, monkeypatch):
    registry = model_registry(as_user(tracking, tmp_path, monkeypatch, "alice", "not-hers-123"))
    with pytest.raises(PermissionError, match="refused the credentials of 'alice'"):
        registry.set_alias(MODEL, CHAMPION, "2", action="promote", reason="x", actor="")
