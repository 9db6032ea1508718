"""The verifier's verdicts on a fixed set of pairs (tests/search/verdict_pairs.py: photo edits against the original
and the bordered copy, look-alike emoji of each family, MNIST 1s and 7s, both orders) are the ones recorded with the
verifier before its speed-ups (skipping the block agreement where the dense check's warp already fails): a speed-up
changes no verdict.  A change of the rules on purpose rewrites the record (``python -m tests.search.verdict_pairs``)
and says so."""

from __future__ import annotations

import json

import pytest

from tests.search.verdict_pairs import VERDICTS, verdicts

# a measurement over 460 pairs of real pictures (seconds of the verifier's own work): `make test` runs it,
# `make test-fast` leaves it out, like the other real-data measurements
pytestmark = pytest.mark.slow


def test_the_verdicts_on_a_fixed_set_of_pairs_are_the_recorded_ones():
    recorded = json.loads(VERDICTS.read_text())
    found = verdicts()
    assert set(found) == set(recorded) and len(found) >= 400
    assert sum(v is True for v in recorded.values()) >= 200 and sum(v is False for v in recorded.values()) >= 200
    changed = {k: (recorded[k], v) for k, v in found.items() if recorded[k] != v}
    assert changed == {}
