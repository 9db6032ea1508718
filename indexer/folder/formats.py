"""An index folder's format versions: which one a manifest is written as, and which ones this release reads.

A release refuses a folder of a format it does not know, so each addition an
earlier release would misread gets its own version, and a folder is written
as the lowest version that holds what it records (an earlier release then
still reads what it can).
"""

from __future__ import annotations

FORMAT_VERSION = 1
# an index of int8 embeddings (manifest backbone.precision): releases before precisions read only format 1, so
# they refuse it instead of querying it with their float32 model; float32 indexes stay format 1
INT8_FORMAT_VERSION = 2
# an index that records another resize filter than bicubic (backbone.resample, new indexes since issue 15):
# the releases before could not resize queries as it did, so they refuse it
RESAMPLE_FORMAT_VERSION = 3
# shards may hold FILE_COLUMNS (issue 17): earlier releases would take a folder mixing shards with and without
# them for damaged, so they refuse it; shards of formats 1-3 are read as before (their FILE_COLUMNS null)
FILE_METADATA_FORMAT_VERSION = 4
READABLE_FORMATS = (FORMAT_VERSION, INT8_FORMAT_VERSION, RESAMPLE_FORMAT_VERSION, FILE_METADATA_FORMAT_VERSION)


def format_version(manifest: dict) -> int:
    """The format version a manifest is written as: the lowest that holds what it records."""
    if manifest.get("file_columns"):  # set by the indexing runs that write shards with FILE_COLUMNS
        return FILE_METADATA_FORMAT_VERSION
    backbone = manifest.get("backbone")
    if not isinstance(backbone, dict):
        return FORMAT_VERSION
    if backbone.get("resample") not in (None, "bicubic"):
        return RESAMPLE_FORMAT_VERSION
    return INT8_FORMAT_VERSION if backbone.get("precision") == "int8" else FORMAT_VERSION
