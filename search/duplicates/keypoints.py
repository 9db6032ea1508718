"""Pixel evidence that two images are one picture: ORB keypoints matched under one similarity transform.

The embeddings of two different photos of one thing (tiles of one texture,
two handwritten 1s, two flags) can score as high as a photo and its crop, so a
cosine threshold alone cannot tell "the same picture, edited" from "a similar
picture" (scripts/bench_duplicates.py).  Keypoints can: an edit keeps the
picture's corners where a similarity transform (shift, scale, rotation) of
the original puts them, a look-alike does not.  Each image is read once from
its file (grey, longest side SIDE pixels), ORB finds up to KEYPOINTS corners
(scikit-image), and a pair counts the matches (mutual nearest descriptors,
ratio test) that RANSAC fits with one transform: MIN_INLIERS or more is a match.

Measured on the benchmark (932 images, lite0 int8 candidates scoring >= 0.55):
edits have a median of 57 inliers, 99.9 % of look-alike pairs 16 or fewer.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from PIL import Image

from imgsearch.indexer.errors import ImgsearchError, MissingDependencyError
from imgsearch.search.errors import ChangedFileError
from imgsearch.search.thumbnails import load_indexed

log = logging.getLogger(__name__)

SIDE = 256  # pixels, longest side: enough corners for ORB's pyramid, cheap to detect
KEYPOINTS = 300
MIN_INLIERS = 15  # fewer: no evidence (look-alikes: 99.9 % at or below 16, edits: median 57)
RESIDUAL = 4.0  # pixels at SIDE: how far a match may sit from where the transform puts it


def _skimage():
    try:
        from skimage.feature import ORB, match_descriptors
        from skimage.measure import ransac
        from skimage.transform import SimilarityTransform
    except ImportError as exc:
        raise MissingDependencyError("keypoint checks of duplicates need scikit-image: pip install scikit-image, "
                                     "or pass --no-keypoints (cosine scores only)") from exc
    return ORB, match_descriptors, ransac, SimilarityTransform


class KeypointMatcher:
    """Keypoints of an index's images, each found once (from its file), and the inliers of a pair."""

    def __init__(self, engine, max_pixels: int | None = None):
        self._orb, self._match, self._ransac, self._transform = _skimage()
        self.engine = engine
        self.max_pixels = max_pixels or engine.config.max_pixels
        self._found: dict[int, tuple | None] = {}
        self._inliers: dict[tuple[int, int], int] = {}  # a pair checked once serves every threshold
        self.unreadable = 0  # images whose file could not be read: their pairs are not confirmed
        self.changed: list[int] = []  # ids whose file changed since indexed: their pairs are not judged either

    def _grey(self, row_id: int) -> np.ndarray:  # (h, w) float64 in [0, 1], longest side SIDE
        img, _, _ = load_indexed(self.engine, row_id, min_size=SIDE // 2, max_pixels=self.max_pixels)
        grey = img.convert("L")
        scale = SIDE / max(grey.size)
        grey = grey.resize((max(8, round(grey.width * scale)), max(8, round(grey.height * scale))), Image.BILINEAR)
        return np.asarray(grey, np.float64) / 255

    def keypoints(self, row_id: int) -> tuple | None:
        """((k, 2) positions, (k, 256) bool descriptors), or None when the file is gone or has no corners."""
        if row_id not in self._found:
            try:
                orb = self._orb(n_keypoints=KEYPOINTS, fast_threshold=0.05)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    orb.detect_and_extract(self._grey(row_id))
                self._found[row_id] = (orb.keypoints, orb.descriptors)
            except ChangedFileError as exc:  # not the picture indexed: no evidence for or against its pairs
                log.warning("keypoints of image %d not checked: %s", row_id, exc)
                self.changed.append(row_id)
                self._found[row_id] = None
            except (ImgsearchError, OSError):
                self.unreadable += 1
                self._found[row_id] = None
            except RuntimeError:  # ORB found no corner at all (a flat picture)
                self._found[row_id] = None
        return self._found[row_id]

    def judgeable(self, row_id: int) -> bool:
        """Whether the image has corners enough for its keypoints to confirm or refute a match."""
        found = self.keypoints(row_id)
        return found is not None and len(found[0]) >= MIN_INLIERS

    def inliers(self, a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in self._inliers:
            self._inliers[key] = self._count(*key)
        return self._inliers[key]

    def _count(self, a: int, b: int, seed: int = 0) -> int:
        """Matches of images ``a`` and ``b`` that one similarity transform explains.

        0 when there is no evidence: a file gone, no corners, or fewer than MIN_INLIERS matches to fit.
        """
        found_a, found_b = self.keypoints(a), self.keypoints(b)
        if found_a is None or found_b is None or min(len(found_a[0]), len(found_b[0])) < MIN_INLIERS:
            return 0
        matches = self._match(found_a[1], found_b[1], cross_check=True, max_ratio=0.8)
        return 0 if len(matches) < MIN_INLIERS else self._fit(found_a, found_b, matches, seed)

    def _fit(self, found_a, found_b, matches, seed: int) -> int:
        src, dst = found_a[0][matches[:, 0]][:, ::-1], found_b[0][matches[:, 1]][:, ::-1]  # (m, 2) x, y
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, inliers = self._ransac((src, dst), self._transform, min_samples=3, residual_threshold=RESIDUAL,
                                      max_trials=200, rng=np.random.default_rng(seed))
        return 0 if inliers is None else int(inliers.sum())

    def matches(self, a: int, b: int) -> bool:
        return self.inliers(a, b) >= MIN_INLIERS
