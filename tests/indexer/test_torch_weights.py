import io
import pickle
import struct

import numpy as np
import pytest

from imgsearch.indexer.model.backbones import _lite_weights_file, get_spec
from imgsearch.indexer.model.torch_weights import (
    LEGACY_MAGIC,
    UnsafeWeightsError,
    load_state_dict,
)


def test_reads_packaged_lite0_weights():
    state = load_state_dict(_lite_weights_file(get_spec("efficientnet-lite0")))
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    # real trained weights, not zeros or a constant
    assert 0.01 < float(state["_fc.weight"].std()) < 1.0


def _legacy_file(state_pickle: bytes) -> bytes:
    header = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, 1001, {"little_endian": True}))
    return header + state_pickle + pickle.dumps([], protocol=2)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(_legacy_file(pickle.dumps({"w": _Evil(marker)}, protocol=2)))
    with pytest.raises(UnsafeWeightsError, match="refusing to load posix.system|refusing to load os.system"):
        load_state_dict(evil)
    assert not marker.exists()


def test_refuses_unexpected_class_in_header(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(pickle.dumps(io.BytesIO(b""), protocol=2))
    with pytest.raises(UnsafeWeightsError, match="refusing to load _io.BytesIO"):
        load_state_dict(bad)


def test_truncated_and_wrong_format(tmp_path):
    src = _lite_weights_file(get_spec("efficientnet-lite0")).read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(src[: len(src) // 2])
    with pytest.raises(UnsafeWeightsError, match="truncated"):
        load_state_dict(cut)
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(UnsafeWeightsError, match="zip-format"):
        load_state_dict(zipped)
    other = tmp_path / "other.pth"
    other.write_bytes(pickle.dumps(12345, protocol=2) + struct.pack("<q", 0))
    with pytest.raises(UnsafeWeightsError, match="not a legacy PyTorch weight file"):
        load_state_dict(other)
