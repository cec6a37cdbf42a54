"""The batcher's length-bucketed queue: batches of similar lengths, the longest-waiting text first."""

from __future__ import annotations

import random
from dataclasses import dataclass

from serving.length_queue import LengthQueue, text_units


@dataclass
class Job:
    texts: list[str]
    arrived: float
    over: bool = False


def queue_of(texts_by_arrival: list[str], ratio: float = 1.5) -> tuple[LengthQueue, list[Job]]:
    queue = LengthQueue(ratio)
    jobs = [Job([text], float(t)) for t, text in enumerate(texts_by_arrival)]
    for job in jobs:
        queue.push(job)
    return queue, jobs


def test_a_batch_holds_texts_of_similar_length_from_a_wide_mix():
    rng = random.Random(0)
    texts = ["w " * rng.randint(2, 60) for _ in range(400)]  # 2 to 60 words, in random order
    queue, _ = queue_of(texts)
    batches = []
    while len(queue):
        batches.append(queue.take(16))
    assert sum(len(b) for b in batches) == 400 and queue.units == 0
    for batch in batches:
        units = [text_units(text) for _, _, text in batch]
        assert max(units) <= 1.5**3 * min(units)  # its bucket and the two neighbours
    # a FIFO slice of 16 from this mix would be padded to ~3x its shortest text; most batches here are full
    assert sum(len(b) == 16 for b in batches) >= len(batches) // 2


def test_the_bucket_of_the_longest_waiting_text_is_served_first_so_no_length_starves():
    long = "x" * 300
    queue, jobs = queue_of([long] + ["short"] * 40)
    first = queue.take(16)
    assert first[0][0] is jobs[0]  # the one long text goes first, alone, though 40 short ones wait
    assert [text for _, _, text in first] == [long]
    second = queue.take(16)
    assert [job.arrived for job, _, _ in second] == [float(t) for t in range(1, 17)]  # in arrival order


def test_a_request_s_texts_are_queued_by_their_own_lengths_and_counted():
    queue = LengthQueue(1.5)
    job = Job(["a" * 5, "b" * 400, "c" * 6], 0.0)
    queue.push(job)
    assert len(queue) == 3 and queue.units == sum(text_units(t) for t in job.texts)
    taken = [queue.take(16) for _ in range(2)]
    assert sorted(len(b) for b in taken) == [1, 2]
    assert {(i, t) for b in taken for _, i, t in b} == set(enumerate(job.texts))
    assert len(queue) == 0 and queue.units == 0


def test_requests_that_are_over_are_dropped_from_the_front_of_each_bucket():
    queue, jobs = queue_of(["a" * 5, "a" * 5, "b" * 300, "a" * 5])
    jobs[0].over = jobs[2].over = True
    dropped = list(queue.drop_heads(lambda job: job.over))
    assert {id(job) for job, _, _ in dropped} == {id(jobs[0]), id(jobs[2])}
    assert [job for job, _, _ in queue.take(16)] == [jobs[1], jobs[3]]
    assert list(queue.drain()) == [] and len(queue) == 0
