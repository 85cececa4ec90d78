"""map_bounded: results in order, bytes in flight bounded, errors and early stops handled, the reader on its own thread."""

import threading
import time

import pytest

from core.pipeline import map_bounded


def test_results_come_back_in_order_whatever_the_workers_take():
    def reduce(item):
        time.sleep(0.002 * (item % 3))  # later items often finish first
        return item * item

    assert list(map_bounded(range(50), reduce, lambda item: 1, workers=3)) == [i * i for i in range(50)]


def test_bytes_read_and_not_yet_returned_stay_within_the_bound():
    held, peak, lock = [0], [0], threading.Lock()

    def items():
        for index in range(40):
            with lock:
                held[0] += 10
                peak[0] = max(peak[0], held[0])
            yield index

    for _ in map_bounded(items(), lambda item: time.sleep(0.001) or item, lambda item: 10, workers=2, max_bytes=30):
        with lock:
            held[0] -= 10
    # The reader takes an item before asking the budget for it: at most one beyond the bound.
    assert peak[0] <= 40


def test_an_item_larger_than_the_bound_goes_alone():
    assert list(map_bounded([1, 2, 3], lambda item: item, lambda item: 100, workers=2, max_bytes=10)) == [1, 2, 3]


def test_a_reading_error_comes_after_the_results_before_it():
    def items():
        yield 1
        yield 2
        raise OSError("truncated file")

    seen = []
    with pytest.raises(OSError, match="truncated file"):
        for result in map_bounded(items(), lambda item: item * 10, lambda item: 1, workers=2):
            seen.append(result)
    assert seen == [10, 20]


def test_a_reducing_error_is_raised_in_order():
    def reduce(item):
        if item == 3:
            raise ValueError("bad batch 3")
        return item

    seen = []
    with pytest.raises(ValueError, match="bad batch 3"):
        for result in map_bounded(range(10), reduce, lambda item: 1, workers=2):
            seen.append(result)
    assert seen == [0, 1, 2]


def test_stopping_early_stops_the_reader_and_closes_its_generator():
    closed, read = threading.Event(), []

    def items():
        try:
            for index in range(10_000):
                read.append(index)
                yield index
        finally:
            closed.set()

    results = map_bounded(items(), lambda item: item, lambda item: 1, workers=2, max_bytes=4)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    results.close()
    assert closed.wait(5)
    assert len(read) < 20  # the budget held the reader back; it did not read on to the end


def test_reading_happens_on_a_thread_of_its_own():
    threads = set()

    def items():
        for index in range(5):
            threads.add(threading.current_thread().name)
            yield index

    assert list(map_bounded(items(), lambda item: item, lambda item: 1, workers=2)) == list(range(5))
    assert threads == {"driftline-reader"}
