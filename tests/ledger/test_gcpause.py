"""The garbage collector pause nests, is shared by threads, and restores what it found."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from ledger import gcpause


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_paused_then_resumed() -> None:
    with gcpause.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pauses_resume_only_at_the_last_exit() -> None:
    with gcpause.paused():
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with gcpause.paused():
        pass
    assert not gc.isenabled()


def test_an_error_inside_still_resumes() -> None:
    with pytest.raises(ValueError), gcpause.paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_overlapping_threads_share_one_pause() -> None:
    inside, release = threading.Event(), threading.Event()

    def worker() -> None:
        with gcpause.paused():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=worker)
    with gcpause.paused():
        thread.start()
        assert inside.wait(5)
    assert not gc.isenabled()  # the thread is still inside
    release.set()
    thread.join(5)
    assert gc.isenabled()
