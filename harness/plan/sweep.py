"""Sweeps: one scenario run under every combination of some settings, per backend, and which to pick.

A scenario's ``sweep`` table maps a setting to the values to try: a size (``jobs``, ``workers``,
``concurrency``) or a backend option (``arq_poll_delay``…). Each backend runs the product of the sizes and
of its *own* options only (an ARQ option would only repeat the RQ run), as scenarios named
``name[key=value, …]``. Which to pick is analysis: ``harness.analysis.sweeps``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from harness.plan.scenarios import SIZES, Scenario
from implementations.backends import QUEUES

NOT_SETTINGS = frozenset({"record_history", "jobs"})  # swept to measure, never recommended
_PREFIXES = tuple(f"{name}_" for name in QUEUES)  # a backend's own options: rq_…, arq_…


def applies(key: str, backend: str) -> bool:
    """Sizes and harness options apply everywhere; ``rq_…`` only to rq, and so on."""
    return not key.startswith(_PREFIXES) or key.startswith(backend + "_")


def label(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "defaults"


def variants(s: Scenario, backend: str) -> list[Scenario]:
    """The scenarios ``backend`` runs for ``s``: ``[s]`` without a sweep."""
    if not s.sweep:
        return [s]
    keys = [k for k in s.sweep if applies(k, backend)]
    out = []
    for combo in itertools.product(*(s.sweep[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        sizes = {k: v for k, v in values.items() if k in SIZES}
        options = {**s.options, **{k: v for k, v in values.items() if k not in SIZES}}
        out.append(replace(s, name=f"{s.name}[{label(values)}]", sweep={}, options=options, sweep_of=s.name,
                           sweep_values=values, **sizes))
    return out
