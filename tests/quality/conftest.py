"""Quality measured on real labelled sets with the real models: minutes of embedding, so every test here is
``slow`` (deselect with -m "not slow")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import mark_area


def pytest_collection_modifyitems(items):
    mark_area(items, Path(__file__).parent, pytest.mark.slow)
