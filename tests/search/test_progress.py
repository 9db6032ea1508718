"""Progress where people wait (issue 29.6): a long step says what it does, on a terminal with a ticking
clock, elsewhere as one log line; counted work gets a bar."""

import logging
import time

from imgsearch.indexer import progress


def test_a_step_off_a_terminal_is_one_log_line(capsys, caplog):
    caplog.set_level(logging.INFO, logger="imgsearch.indexer.progress")
    with progress.step("preparing the thing"):
        pass
    assert capsys.readouterr().err == ""
    assert [r.getMessage() for r in caplog.records] == ["preparing the thing ..."]


def test_a_step_on_a_terminal_ticks_its_clock_and_stays(capsys, monkeypatch):
    monkeypatch.setattr(progress, "_on_terminal", lambda: True)
    with progress.step("preparing the thing"):
        time.sleep(1.3)
    err = capsys.readouterr().err
    assert "preparing the thing (00:00)" in err and "preparing the thing (00:01)" in err
    assert err.rstrip().endswith("(00:01)") and err.endswith("\n")  # left on screen with the time it took


def test_a_step_can_be_silenced_or_leave_nothing_behind(capsys, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="imgsearch.indexer.progress")
    with progress.step("silent", enabled=False):
        pass
    assert capsys.readouterr().err == "" and not caplog.records
    monkeypatch.setattr(progress, "_on_terminal", lambda: True)
    with progress.step("transient", leave=False):
        pass
    err = capsys.readouterr().err
    assert "transient (00:00)" in err and not err.endswith("\n")  # shown, then cleared off the line


def test_a_bar_shows_on_a_terminal_only(capsys, monkeypatch):
    assert list(progress.bar(range(3), desc="pairs")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress, "_on_terminal", lambda: True)
    assert list(progress.bar(range(3), desc="pairs", unit="pair")) == [0, 1, 2]
    assert "pairs: 100%" in capsys.readouterr().err


def test_duplicates_and_publishing_say_what_they_do(engine, capsys, monkeypatch, tmp_path):
    """Wired where people wait: the pair search of duplicates, and a publish's build and tuning."""
    import shutil

    from imgsearch.indexer.run.rebuild import rebuild_index
    from imgsearch.search.duplicates.groups import find_duplicates

    monkeypatch.setattr(progress, "_on_terminal", lambda: True)
    find_duplicates(engine, 0.9)
    err = capsys.readouterr().err  # a bar per stage, counting the images searched
    assert "finding pairs scoring at least 0.9:" in err and f"0/{len(engine)} [" in err and "grouping:" in err
    copy = tmp_path / "idx"
    shutil.copytree(engine.store.root, copy)
    rebuild_index(copy)
    err = capsys.readouterr().err
    assert "building the search index (" in err and "tuning the search index for recall" in err


def test_a_step_that_says_is_one_line_off_a_terminal_and_its_inner_steps_only_log(capsys, caplog):
    """Issue 32: preparing a model on the first run is said on stderr even off a terminal, once, inner steps
    included (tests/indexer/test_quiet.py: it reaches the real stderr while the libraries' output is captured)."""
    caplog.set_level(logging.INFO, logger="imgsearch.indexer.progress")
    with progress.step("preparing the model for this CPU, once", say=True):
        with progress.step("converting it", say=True):
            pass
    assert capsys.readouterr().err == "preparing the model for this CPU, once ...\n"
    assert [r.getMessage() for r in caplog.records] == ["converting it ..."]
    with progress.step("again", say=True):  # the next step says its line too
        pass
    assert capsys.readouterr().err == "again ...\n"
