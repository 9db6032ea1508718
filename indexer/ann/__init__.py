"""The FAISS index: which type to build (``choice``), FAISS operations (``faiss_ops``), recall tuning (``tuning``).

The package re-exports the three modules' public names, so callers write ``ann.choose_index``.
"""

from imgsearch.indexer.ann.choice import *  # noqa: F401,F403
from imgsearch.indexer.ann.faiss_ops import *  # noqa: F401,F403
from imgsearch.indexer.ann.tuning import *  # noqa: F401,F403
