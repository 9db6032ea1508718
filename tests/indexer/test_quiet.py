"""indexer/quiet.py: what libraries write below Python (descriptors 1 and 2) is kept off the terminal, in a log,
and shown when the call fails or under --verbose (issue 32)."""

import os
import sys

import pytest

from imgsearch.indexer import quiet
from imgsearch.indexer.quiet import captured, terminal


def c_level_chatter(text: str) -> None:
    os.write(2, f"E0000 {text}\n".encode())  # as C++ writes: below sys.stderr
    os.write(1, f"stdout {text}\n".encode())
    print(f"Saved artifact at {text}")  # as the converter prints
    print(f"warn {text}", file=sys.stderr)


@pytest.fixture(autouse=True)
def not_verbose(monkeypatch):
    monkeypatch.setenv(quiet.VERBOSE_ENV, "0")


def test_chatter_is_kept_in_the_log_not_shown(tmp_path, capfd):
    log = tmp_path / "models" / "libraries.log"
    with captured(log, "preparing a model"):
        c_level_chatter("cuInit")
        print("preparing x, once", file=terminal(), flush=True)  # imgsearch's own line reaches the terminal
    out, err = capfd.readouterr()
    assert out == "" and err == "preparing x, once\n"
    kept = log.read_text()
    assert "preparing a model" in kept
    for line in ("E0000 cuInit", "stdout cuInit", "Saved artifact at cuInit", "warn cuInit"):
        assert line in kept
    print("after")  # the descriptors are back
    os.write(2, b"back\n")
    out, err = capfd.readouterr()
    assert out == "after\n" and err == "back\n"


@pytest.mark.parametrize("said", [b"F0000 check failed: cuInit", b"", b"no newline at the end",
                                  b"\xff\xfe not utf-8 \xc3", "\u00e9t\u00e9 \U0001f600\n\n".encode()])
def test_a_failure_shows_what_was_said(tmp_path, capfd, said):
    log = tmp_path / "libraries.log"
    with pytest.raises(RuntimeError, match="conversion failed"):
        with captured(log, "preparing"):
            os.write(2, said)
            raise RuntimeError("conversion failed")
    err = capfd.readouterr().err
    text = said.decode("utf-8", "replace")
    if text.strip():
        assert text.strip() in err and str(log) in err  # the libraries' words, and where they are kept
        assert "(failed)" in log.read_text(encoding="utf-8")
    else:
        assert err == ""


def test_verbose_shows_everything(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    with captured(tmp_path / "libraries.log", "preparing"):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert "XNNPACK" in capfd.readouterr().err
    assert not (tmp_path / "libraries.log").exists()


def test_nested_captures_keep_one_capture(tmp_path, capfd):
    with captured(tmp_path / "a.log", "outer"):
        with captured(tmp_path / "b.log", "inner"):
            os.write(2, b"inner chatter\n")
        os.write(2, b"outer chatter\n")
    assert capfd.readouterr().err == ""
    assert "inner chatter" in (tmp_path / "a.log").read_text() and "outer chatter" in (tmp_path / "a.log").read_text()


def test_environment_is_quiet_unless_verbose(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet.quiet_environment(show=False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2" and not quiet.verbose()
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    quiet.quiet_environment(show=True)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and quiet.verbose()


def test_the_log_is_bounded(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(quiet, "LOG_LIMIT", 1000)
    log = tmp_path / "libraries.log"
    for i in range(50):
        with captured(log, f"loading {i}"):
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert log.stat().st_size <= 1000 + 200 and (tmp_path / "libraries.log.1").stat().st_size > 1000
    assert "loading 49" in log.read_text() and capfd.readouterr().err == ""
