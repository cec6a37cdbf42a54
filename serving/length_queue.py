"""The micro-batcher's queue: waiting texts bucketed by length, batches taken from one bucket.

A FIFO batch of a wide length mix (users send 2 to 60+ words) is padded to its longest text, so
it either wastes most of its forward pass on padding or, cut into sub-batches of similar length,
runs several small passes that cost more per text. Here every waiting text sits in a bucket of
similar lengths (bucket `k` holds lengths whose `len + OVERHEAD_CHARS` lies in `[ratio^k,
ratio^(k+1))`), so a batch can be filled with texts its padding suits. The bucket served next is
the one whose head waited longest (no text is starved, whatever its length); the batch is filled
from that bucket in arrival order, then from the next shorter and longer buckets (padding stays
within `ratio^2` of a text's own length).

Work is counted in units of `len(text) + OVERHEAD_CHARS`: a forward pass costs about its texts'
characters (tokens) plus a fixed share per text (tokenizing, the head, the hand-offs), so a queue of
long texts is more work than a queue of short ones of the same count (admission paces on units).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

# a text's fixed cost, in characters of text it is worth (tokenizing, softmax, the hand-offs)
OVERHEAD_CHARS = 32


def text_units(text: str) -> int:
    """What a text costs to score, in units of one character of text."""
    return len(text) + OVERHEAD_CHARS


# an item is (job, index of the text in its job, text); the job has `arrived` (loop time)
Item = tuple[Any, int, str]


class LengthQueue:
    """Waiting texts by length bucket; each bucket in arrival order."""

    def __init__(self, ratio: float) -> None:
        self._log_ratio = math.log(max(ratio, 1.01))
        self._buckets: dict[int, deque[Item]] = {}
        self.texts = 0  # texts waiting
        self.units = 0  # their `text_units`

    def __len__(self) -> int:
        return self.texts

    def bucket(self, text: str) -> int:
        return int(math.log(text_units(text)) / self._log_ratio)

    def push(self, job: Any) -> None:
        """Queue every text of `job` (its `texts` and `arrived`) in its length's bucket."""
        for i, text in enumerate(job.texts):
            self._buckets.setdefault(self.bucket(text), deque()).append((job, i, text))
            self.units += text_units(text)
        self.texts += len(job.texts)

    def drop_heads(self, dead: Callable[[Any], bool]) -> Iterator[Item]:
        """Remove (and yield) the items at the front of each bucket whose job `dead` says is over
        (expired, abandoned, already failed); within a bucket the oldest come first."""
        for key in list(self._buckets):
            bucket = self._buckets[key]
            while bucket and dead(bucket[0][0]):
                item = bucket.popleft()
                self._taken(item)
                yield item
            if not bucket:
                del self._buckets[key]

    def take(self, max_texts: int) -> list[Item]:
        """Up to `max_texts` items of similar length: the longest-waiting head's bucket first (in
        arrival order), then its shorter and longer neighbours."""
        if not self._buckets:
            return []
        oldest = min(self._buckets, key=lambda key: self._buckets[key][0][0].arrived)
        batch: list[Item] = []
        for key in (oldest, oldest - 1, oldest + 1):
            bucket = self._buckets.get(key)
            while bucket and len(batch) < max_texts:
                item = bucket.popleft()
                self._taken(item)
                batch.append(item)
            if bucket is not None and not bucket:
                del self._buckets[key]
        return batch

    def drain(self) -> Iterator[Item]:
        """Remove and yield every item (shutdown)."""
        for bucket in self._buckets.values():
            yield from bucket
        self._buckets.clear()
        self.texts = self.units = 0

    def _taken(self, item: Item) -> None:
        self.texts -= 1
        self.units -= text_units(item[2])
