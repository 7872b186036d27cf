"""Fixtures for the data tests."""

import threading

import pytest


@pytest.fixture(autouse=True)
def no_leaked_loader_threads():
    """Every test must leave no DataLoader thread running once its iterators are gone."""
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("funcnet-data")]
    assert not leaked, f"DataLoader threads still running after the test: {leaked}"
