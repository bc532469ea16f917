"""One background thread joined to the caller by a bounded queue, failures handed across.

The run overlaps reading, predicting and writing with two of these: the reader produces
chunks in the background for the caller to consume (``produced``), and the writer consumes
in the background what the caller sends (``consumed``). Either side's failure reaches the
other; the caller leaving early cancels the background work and never leaves it blocked.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class _Channel(Generic[T]):
    """A bounded queue that ends with ``_DONE`` and remembers the background failure."""

    def __init__(self, depth: int) -> None:
        self.queue: queue.Queue[T | object] = queue.Queue(maxsize=depth)
        self.failure: BaseException | None = None

    def drain(self, thread: threading.Thread) -> None:
        """Empty the queue until ``thread`` ends, so a blocked ``put`` can finish."""
        while thread.is_alive():
            with suppress(queue.Empty):
                self.queue.get(timeout=0.1)


def produced(
    produce: Callable[[Callable[[T], None]], None],
    cancel: Callable[[], None],
    depth: int = 2,
    name: str = "scorer-producer",
) -> Iterator[T]:
    """Run ``produce(put)`` in the background and yield what it puts, in order.

    A failure in ``produce`` is raised here after the items before it. Closing the iterator
    early calls ``cancel`` (e.g. cancel the query) and waits for the thread to end.
    """
    channel: _Channel[T] = _Channel(depth)

    def work() -> None:
        try:
            produce(channel.queue.put)
        except BaseException as exc:  # handed to the consumer
            channel.failure = exc
        finally:
            channel.queue.put(_DONE)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while (item := channel.queue.get()) is not _DONE:
            yield item  # type: ignore[misc]
        if channel.failure is not None:
            raise channel.failure
    finally:
        if thread.is_alive():
            cancel()
            channel.drain(thread)
        thread.join()


@contextmanager
def consumed(
    consume: Callable[[Iterable[T]], None],
    cancel: Callable[[], None],
    depth: int = 2,
    name: str = "scorer-consumer",
) -> Iterator[Callable[[T], None]]:
    """Yield ``send``; ``consume`` gets everything sent, in order, on a background thread.

    A failure in ``consume`` is raised by the next ``send`` or on leaving the block. When the
    block fails, ``cancel`` is called (e.g. cancel the COPY) and the block's error wins.
    """
    channel: _Channel[T] = _Channel(depth)

    def items() -> Iterator[T]:
        while (item := channel.queue.get()) is not _DONE:
            yield item  # type: ignore[misc]

    def work() -> None:
        try:
            consume(items())
        except BaseException as exc:  # handed to the producer
            channel.failure = exc
            while channel.queue.get() is not _DONE:  # keep the producer unblocked
                pass

    def send(item: T) -> None:
        if channel.failure is not None:
            raise channel.failure
        channel.queue.put(item)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        yield send
    except BaseException:
        if thread.is_alive() and channel.failure is None:  # the block failed, not the consumer
            cancel()
        channel.queue.put(_DONE)
        thread.join()
        raise
    channel.queue.put(_DONE)
    thread.join()
    if channel.failure is not None:
        raise channel.failure
