"""Indexing on Spark (local[2], one session per run: the ``spark`` fixture of tests/conftest.py): every test
here is a ``spark`` test (deselect with -m "not spark"), as is any test elsewhere that uses that fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import mark_area


def pytest_collection_modifyitems(items):
    mark_area(items, Path(__file__).parent, pytest.mark.spark)
