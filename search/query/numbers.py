"""The one strict parser of numbers (``indexer/numbers.py``), as search and web take it: every integer and
float a query, a request or a command takes (``k``, ``offset``, ``min_score``, weights, ids, sizes, limits,
thresholds, filter values) goes through ``integer_field``, ``id_field`` or ``number_field``, every JSON body
through ``loads``, every command-line number through the click types ``Integer`` and ``Number``.  A value of
any size, NaN or infinity is an ``InvalidFieldError`` naming the field and its range, never an overflow."""

from imgsearch.indexer.numbers import MAX_ID, id_field, integer_field, loads, number_field
from imgsearch.indexer.options import Integer, Number

__all__ = ["MAX_ID", "Integer", "Number", "id_field", "integer_field", "loads", "number_field"]
