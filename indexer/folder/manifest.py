"""Rules about a manifest's contents that more than one reader relies on.
"""

from __future__ import annotations

from indexer.folder.store import IndexFormatError


def check_compatible(manifest: dict, backbone_name: str, dim: int, where: str) -> None:
    """Raise if an index folder was built with another backbone or dimension."""
    if manifest["backbone"]["name"] != backbone_name or manifest["dim"] != dim:
        raise IndexFormatError(
            f"{where} was built with backbone {manifest['backbone']['name']} "
            f"(dimension {manifest['dim']}), not {backbone_name} (dimension {dim}); "
            f"use --backbone {manifest['backbone']['name']} or another --index folder"
        )
