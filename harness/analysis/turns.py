"""A retry's turn in the queue: how long it waited behind work that was due before it.

A retry due at ``d`` that its library queues behind the jobs already waiting (RQ and Celery put a retry with
no delay at the back of the queue) starts only once they have. The time from ``d`` to the
start of the last attempt that was due before ``d`` and started before the retry is the queue's backlog,
not the library's lateness: ``turn_waits`` returns it per retry. A queue that runs a retry ahead of older
work (ARQ leaves it at the head) gives waits of 0, and so does an idle one: then all of a retry's
lateness is the library's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter

_NONE = -(1 << 62)


def turn_waits(retries: Sequence[tuple[int, int]], others: Sequence[tuple[int, int]]) -> list[float]:
    """For each retry ``(due_ns, start_ns)``: ``max(0, L - due) / 1e9`` seconds, where ``L`` is the latest start
    earlier than the retry's of any attempt (the other retries or ``others``, e.g. first attempts due at their
    enqueue) that was due strictly before it. O(n log n): one sweep in start order over a Fenwick tree of the
    latest start per due time."""
    items = [(start, due, i) for i, (due, start) in enumerate(retries)]
    items += [(start, due, -1) for due, start in others]
    items.sort()
    rank = {d: k for k, d in enumerate(sorted({due for _, due, _ in items}), start=1)}
    tree = [_NONE] * (len(rank) + 1)
    waits = [0.0] * len(retries)
    for _, group in groupby(items, key=itemgetter(0)):
        same = list(group)  # started at the same instant: none of them is earlier than another
        for _, due, i in same:
            if i >= 0:
                latest, k = _NONE, rank[due] - 1  # due strictly before this retry's
                while k > 0:
                    latest = max(latest, tree[k])
                    k -= k & -k
                waits[i] = max(0, latest - due) / 1e9
        for start, due, _ in same:
            r = rank[due]
            while r < len(tree):
                tree[r] = max(tree[r], start)
                r += r & -r
    return waits
