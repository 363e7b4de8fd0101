"""Shared fixtures: the ``backend`` fixture runs a test once per backend (numpy, torch, jax)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

BACKEND_NAMES = ("numpy", "torch", "jax")


@pytest.fixture(params=BACKEND_NAMES, ids=lambda name: name)
def backend(request: pytest.FixtureRequest):
    """Each compute backend in turn; CI installs all three, so none is skipped there."""
    name = request.param
    if name != "numpy":
        pytest.importorskip(name)
    from unibatch.backends import backend_from_name

    return backend_from_name(name)


@pytest.fixture(params=BACKEND_NAMES, ids=lambda name: f"to-{name}")
def other_backend(request: pytest.FixtureRequest):
    """A second backend, for conversions between every pair."""
    name = request.param
    if name != "numpy":
        pytest.importorskip(name)
    from unibatch.backends import backend_from_name

    return backend_from_name(name)


def to_numpy(x):
    """Any backend array as NumPy, for comparisons in tests."""
    from unibatch.backends import get_backend

    return get_backend(x).to_numpy(x)
