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


@pytest.mark.parametrize(
    "uri",
    ["mysql://x/y", "sqlite:///x.db?bogus=1", "sqlite:///x.db?batch=0", "sqlite:///x.db?journal=", "postgresql://"],
)
def test_an_unusable_log_uri_is_a_configuration_error(uri: str) -> None:
    from tokenward.log import open_log

    with pytest.raises(ConfigurationError):
        open_log(uri)


@pytest.mark.parametrize("uri", ["redis://h:99999", "redis://h/notanumber", "redis://h?bogus=1", "redis+cluster://h/0"])
def test_an_unusable_redis_uri_is_a_configuration_error(uri: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(uri)


def test_key_and_list_errors_are_configuration_errors() -> None:
    from tokenward.proof import KeyRing
    from tokenward.proof.keys import KeyRingError
    from tokenward.signals.network import CidrListError

    with pytest.raises(KeyRingError) as caught:
        KeyRing.from_strings(["not a key"])
    assert isinstance(caught.value, ConfigurationError)
    assert issubclass(CidrListError, ConfigurationError)
