"""RunAhead: the producer runs ahead of a slow consumer, items are batched, nothing is lost."""

from __future__ import annotations

import threading
import time

import pytest

from webui.streaming import RunAhead


def test_a_slow_consumer_gets_few_batches_and_every_item_in_order():
    produced = threading.Event()

    def make():
        yield from range(1000)
        produced.set()

    batches = []
    for batch in RunAhead(make).batches(0.05):
        batches.append(batch)
        time.sleep(0.02)  # the page is slower than the model
    assert [x for b in batches for x in b] == list(range(1000))
    assert produced.is_set()
    assert len(batches) < 20  # not one per item


def test_boundary_items_are_alone_in_their_batch():
    items = ["a", "b", "IMG1", "c", "IMG2"]
    batches = list(RunAhead(lambda: iter(items)).batches(10.0, boundary=lambda x: x.startswith("IMG")))
    # "a", "b" and "c" wait (10 s interval) until a boundary flushes them, never crossing one
    assert [x for b in batches for x in b] == items
    assert ["IMG1"] in batches and ["IMG2"] in batches
    assert ["c"] in batches and all("IMG1" not in b or len(b) == 1 for b in batches)


def test_the_producers_error_is_raised_after_its_items():
    def make():
        yield 1
        raise RuntimeError("model failed")

    seen = []
    with pytest.raises(RuntimeError, match="model failed"):
        for batch in RunAhead(make).batches(0.01):
            seen += batch
    assert seen == [1]


def test_closing_the_consumer_stops_the_producer():
    closed = threading.Event()

    def make():
        try:
            i = 0
            while True:
                i += 1
                time.sleep(0.001)
                yield i
        finally:
            closed.set()

    ahead = RunAhead(make)
    batches = ahead.batches(0.01)
    next(batches)
    batches.close()  # what Gradio does to a cancelled (Stop) generator handler
    assert ahead.finished.wait(5) and closed.is_set()
