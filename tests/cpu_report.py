"""``pytest --cpu-report=SECONDS``: the tests that cost SECONDS of CPU or more and are not marked ``slow``.

A test's CPU is this process's and that of the child processes it started and waited for (the console, spawned
decoding and verifying pools), from ``getrusage`` before and after its body; fixtures, which tests share, are
not counted.  The rule it checks (pyproject.toml's ``slow`` marker): a test that costs 5 s of CPU or more on
these two cores is ``slow``, so `make test-fast` (which leaves ``slow`` out) fits its time; `make test` runs
every test.  Under xdist each worker measures its own tests and the controller lists them.  Without the option
nothing is measured.
"""

from __future__ import annotations

import resource

import pytest

_SPENT = pytest.StashKey[float]()
_MEASURED: list[tuple[float, str]] = []  # (CPU seconds, test) of the unmarked tests, where they are reported


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pytest_addoption(parser):
    parser.addoption("--cpu-report", type=float, default=None, metavar="SECONDS",
                     help="list the tests not marked slow that cost SECONDS of CPU or more (tests/cpu_report.py)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if item.config.getoption("cpu_report") is None or item.get_closest_marker("slow") is not None:
        yield
        return
    start = _cpu()
    yield
    item.stash[_SPENT] = _cpu() - start


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call" and _SPENT in item.stash:
        outcome.get_result().user_properties.append(("cpu_s", item.stash[_SPENT]))


def pytest_runtest_logreport(report):
    if report.when == "call":
        for name, value in report.user_properties:
            if name == "cpu_s":
                _MEASURED.append((value, report.nodeid))


def pytest_terminal_summary(terminalreporter, config):
    bar = config.getoption("cpu_report")
    if bar is None:
        return
    over = sorted((spent, nodeid) for spent, nodeid in _MEASURED if spent >= bar)[::-1]
    terminalreporter.section(f"tests not marked slow that cost {bar:g} s of CPU or more")
    for spent, nodeid in over:
        terminalreporter.line(f"{spent:6.1f} s  {nodeid}")
    if not over:
        terminalreporter.line("none")
