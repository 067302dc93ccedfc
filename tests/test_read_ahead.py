import time

import pytest

from kohaku_prep.errors import PrepError
from kohaku_prep.read_ahead import read_ahead


def test_read_ahead_keeps_order_and_raises_the_producers_error():
    assert list(read_ahead(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise PrepError("bad batch")
    got = read_ahead(failing())
    assert next(got) == 1
    with pytest.raises(PrepError, match="bad batch"):
        next(got)


def test_read_ahead_stops_its_producer_when_left_early():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i
    reader = read_ahead(items())
    assert next(reader) == 0
    reader.close()
    time.sleep(0.5)
    assert len(produced) <= 3
