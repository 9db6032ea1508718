"""The versions of the libraries that wrote an index folder, recorded in its manifest (``versions``)."""

from __future__ import annotations

import platform

import numpy as np
import pyarrow as pa


def library_versions() -> dict:
    import faiss
    import PIL

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "faiss": faiss.__version__,
        "pillow": PIL.__version__,
    }
    from importlib.metadata import PackageNotFoundError, version

    for package in ("tensorflow", "keras", "ai-edge-litert"):
        try:  # from the package metadata: importing TensorFlow just for this costs seconds
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions
