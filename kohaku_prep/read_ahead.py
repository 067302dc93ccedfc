"""An iterator produced one item ahead on a second thread."""
from __future__ import annotations

import queue
import threading
from typing import Generator, Iterable, TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterable[T]) -> Generator[T, None, None]:
    """`items`, produced one ahead on a second thread: reading the next chunk of tags (Parquet decoding,
    string splitting) overlaps building this one's captions, and both release the GIL. Closing the
    generator early stops the producer."""
    slot: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()  # the consumer left early: the producer must not block on a full slot

    def offer(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                slot.put(entry, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((_END, None))
        except BaseException as exc:  # re-raised in the consumer
            offer((_END, exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, error = slot.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
