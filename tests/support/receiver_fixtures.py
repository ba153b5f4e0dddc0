"""Pytest fixtures for the loopback webhook receiver (``tests.support.receiver``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.receiver import ReceiverHandle, start_receiver_in_thread


@pytest.fixture
def receiver() -> Iterator[ReceiverHandle]:
    """A fresh receiver on 127.0.0.1 (its own thread and loop), stopped after the test."""
    handle = start_receiver_in_thread()
    try:
        yield handle
    finally:
        handle.stop()
