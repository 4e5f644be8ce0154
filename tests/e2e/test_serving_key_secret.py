"""The serving API key from a Prefect Secret block, on Prefect's test server."""

import pytest
from prefect.blocks.system import Secret
from pydantic import SecretStr

from tasks.clients.secrets import with_serving_key
from tasks.shared.settings import Settings

pytestmark = pytest.mark.e2e


def test_the_serving_key_comes_from_a_prefect_secret(prefect_harness, settings: Settings) -> None:
    Secret(value="from-the-vault").save("serving-key", overwrite=True)
    named = settings.model_copy(update={"serving_api_key_secret": "serving-key"})
    assert with_serving_key(named).serving_api_key.get_secret_value() == "from-the-vault"

    direct = named.model_copy(update={"serving_api_key": SecretStr("set-here")})
    assert with_serving_key(direct).serving_api_key.get_secret_value() == "set-here"
    assert with_serving_key(settings).serving_api_key is None  # neither: no authentication

    missing = settings.model_copy(update={"serving_api_key_secret": "no-such-secret"})
    with pytest.raises(ValueError, match="serving API key's Prefect secret 'no-such-secret'"):
        with_serving_key(missing)
