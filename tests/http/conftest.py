"""Fixtures shared by the HTTP-layer tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.http.test_paths import RecordingUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    """An upstream on raw sockets that records every request it receives, byte for byte."""
    server = RecordingUpstream()
    yield server
    server.shutdown()
    server.server_close()
