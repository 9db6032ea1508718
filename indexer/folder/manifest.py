"""Rules about a manifest's contents that more than one reader relies on.
"""

from __future__ import annotations

from indexer.folder.store import IndexFormatError


def check_compatible(manifest: dict, backbone: str, dim: int, where: str) -> None:
    """Raise if an index folder was built with another backbone (name) or dimension."""
    built_with = backbone_name(manifest)
    if built_with != backbone or manifest["dim"] != dim:
        raise IndexFormatError(
            f"{where} was built with backbone {built_with} "
            f"(dimension {manifest['dim']}), not {backbone} (dimension {dim}); "
            f"use --backbone {built_with} or another --index folder"
        )


def search_dim(manifest: dict) -> int:
    """The dimension of the vectors the search indexes hold (after whitening, if any)."""
    return manifest.get("search_dim", manifest["dim"])


def backbone_name(manifest: dict) -> str:
    """The name of the backbone the index was built with."""
    return manifest["backbone"]["name"]
