"""Every error tokenward raises on purpose is a TokenwardError, and still the built-in
type callers caught before the hierarchy existed."""

from __future__ import annotations

import pytest

from tokenward import ConfigurationError, PolicyError, TokenwardError
from tokenward.http.app import create_gateway
from tokenward.policy import parse_policy
from tokenward.store import StoreUnavailable, open_store


@pytest.mark.parametrize("uri", ["postgres://x", "memory://?max_keys=0", "memory://?bogus=1", "file:///tmp/x"])
def test_an_unusable_store_uri_is_a_configuration_error(uri: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(uri)
    assert isinstance(caught.value, TokenwardError) and isinstance(caught.value, ValueError)


def test_policy_and_gateway_configuration_errors_share_the_base() -> None:
    with pytest.raises(TokenwardError):
        parse_policy({"proof": {"difficulty": 99}})
    assert issubclass(PolicyError, ConfigurationError)
    with pytest.raises(ConfigurationError, match="no upstream"):
        create_gateway(parse_policy({}))


def test_store_unavailable_is_a_tokenward_error_and_a_runtime_error() -> None:
    assert issubclass(StoreUnavailable, TokenwardError) and issubclass(StoreUnavailable, RuntimeError)
