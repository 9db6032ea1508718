"""What the duplicates verifier needs of one image, computed once from the decoded picture.

``local_features(image)`` -> ``LocalFeatures``: up to KEYPOINTS ORB keypoints
(OpenCV) of the grey picture scaled to SIDE pixels on its longest side, with
their 32-byte descriptors, and a grey thumbnail of THUMB pixels on its longest
side for the dense checks (``search/duplicates/verifier.py`` compares two).
About 300 x (8 + 32) + 64 x 64 bytes, ~16 KB, per image at most.

Indexing computes them from the picture it already decoded for the
embedding (``reader.read_one``) and stores them (``indexer/folder/features.py``);
a reader without them computes them from the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgsearch.indexer.errors import MissingDependencyError

SIDE = 256  # pixels, longest side, where keypoints are found
KEYPOINTS = 300
THUMB = 64  # pixels, longest side of the thumbnail the dense checks align


@dataclass(frozen=True)
class LocalFeatures:
    points: np.ndarray  # (k, 2) float32 x, y in the SIDE frame
    descriptors: np.ndarray  # (k, 32) uint8 ORB descriptors
    size: tuple[int, int]  # (width, height) of the SIDE frame
    thumb: np.ndarray  # (h, w, 3) uint8 RGB, longest side THUMB

    def __len__(self) -> int:
        return len(self.points)


def cv2_module():
    try:
        import cv2
    except ImportError as exc:
        raise MissingDependencyError("checking duplicates needs OpenCV: pip install opencv-python-headless, "
                                     "or pass --no-keypoints (cosine scores only)") from exc
    return cv2


def _scaled(grey: Image.Image, side: int) -> Image.Image:
    scale = side / max(grey.size)
    return grey.resize((max(8, round(grey.width * scale)), max(8, round(grey.height * scale))), Image.BILINEAR)


def local_features(image: Image.Image) -> LocalFeatures:
    """The keypoints and thumbnail of ``image`` (any mode; transparency as composed on white)."""
    cv2 = cv2_module()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    rgb = image.convert("RGB")
    grey = rgb.convert("L")
    big = np.asarray(_scaled(grey, SIDE), np.uint8)
    orb = cv2.ORB_create(nfeatures=4 * KEYPOINTS, edgeThreshold=15, patchSize=15, fastThreshold=10)
    found, desc = orb.detectAndCompute(np.pad(big, 16, mode="edge"), None)
    if desc is None or not found:
        points, desc = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    else:
        points = np.array([k.pt for k in found], np.float32) - 16
        keep = _spread(points, np.array([k.response for k in found], np.float32), big.shape)
        points, desc = points[keep], desc[keep]
    thumb = np.asarray(rgb.resize(_scaled(grey, THUMB).size, Image.BILINEAR), np.uint8)
    return LocalFeatures(points, np.asarray(desc, np.uint8), (big.shape[1], big.shape[0]), thumb)


def features_or_none(image: Image.Image) -> LocalFeatures | None:
    """``local_features(image)``, or None without OpenCV (indexing goes on; the verifier reads the file later)."""
    try:
        return local_features(image)
    except MissingDependencyError:
        return None


def _spread(points: np.ndarray, response: np.ndarray, shape: tuple, grid: int = 8) -> np.ndarray:
    """Indices of at most KEYPOINTS points, the strongest of each cell of a grid x grid grid first, so the
    keypoints cover the picture (ORB's strongest corners crowd into its busiest part)."""
    h, w = shape
    cell = (np.minimum(points[:, 1] * grid // h, grid - 1) * grid + np.minimum(points[:, 0] * grid // w, grid - 1))
    order = np.lexsort((-response, cell))  # by cell, strongest first
    cells = cell[order]
    first = np.searchsorted(cells, cells)  # where each point's cell starts in the order
    rank = np.arange(len(order)) - first  # 0 for a cell's strongest
    return np.sort(order[np.lexsort((-response[order], rank))[:KEYPOINTS]])
