"""Doctest set-up for the modules under src/: ``np`` is available in every example."""

import numpy
import pytest


@pytest.fixture(autouse=True)
def _doctest_numpy(doctest_namespace: dict) -> None:
    doctest_namespace["np"] = numpy
