"""Fixtures of the end-to-end suite (see tests/README.md).

    stack        session-scoped Stack with the default configuration of envoy/envoy.yaml, the
                 real filter, embedder, bridge, Redis 8 and the mock LLM (latency 0).
                 Skipped while the filter is not built/implemented (see `filter_status`).
    make_stack   factory: make_stack(**Stack options) -> a started Stack, stopped after the test.
    client       an httpx.Client with a generous timeout.
    filter_ready None, or the reason the filter cannot be loaded yet.

On a test failure the logs of every live stack are attached to the report; at the end of the
session, any process left behind by any stack fails the run.
"""

from __future__ import annotations

import httpx
import pytest

import stack as stacklib
from stack import Stack


@pytest.fixture(scope="session")
def filter_ready() -> str | None:
    return stacklib.filter_status()


def _require_filter(reason: str | None) -> None:
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def stack(filter_ready):
    _require_filter(filter_ready)
    s = Stack()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def make_stack(filter_ready):
    made: list[Stack] = []

    def make(**options) -> Stack:
        if options.get("filter", True):
            _require_filter(filter_ready)
        s = Stack(**options)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def client():
    with httpx.Client(timeout=30.0) as c:
        yield c


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and Stack.live:
        for s in Stack.live:
            s.mark_failed()
            rep.sections.append((f"semcache stack logs ({s.log_dir})", s.log_tails()))


def pytest_sessionfinish(session, exitstatus):
    left = []
    for s in Stack.started:
        if s in Stack.live:
            s.stop()
        left += s.leftovers()
    if left:
        print("\nsemcache: processes left behind by the stack launcher: " + ", ".join(left))
        session.exitstatus = 1
