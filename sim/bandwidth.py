"""Max-min fair sharing of links between concurrent flows, by progressive filling. Pure: no SimPy.

Every unfrozen flow's rate rises at the same pace; a flow freezes when it reaches its own cap (QEMU's
`max-bandwidth`) or when a link it crosses fills up. What a capped flow does not take stays on the
link for the others. The result is the unique max-min fair allocation: no flow can get more without
taking from a flow that has no more than it.

Worked example: one 10 GB/s link, flow a capped at 2 GB/s, flows b and c uncapped. The level rises to
2 (a's cap, below the link's 10/3): a freezes at 2; the link's remaining 8 is split by b and c: 4 each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# two shares this close are the same bottleneck (rounding in remaining / count)
_SAME_LEVEL = 1e-12


def max_min_rates(caps_bytes_s: Sequence[float], paths: Sequence[Sequence[int]],
                  capacities_bytes_s: Sequence[float]) -> list[float]:
    """The max-min fair rate of each flow. Flow i may not exceed `caps_bytes_s[i]` (inf = uncapped)
    and crosses the links whose indices are `paths[i]`; link j carries at most
    `capacities_bytes_s[j]`. A flow that crosses no link gets its cap."""
    rates = [0.0] * len(caps_bytes_s)
    active = set(range(len(caps_bytes_s)))
    frozen_load = [0.0] * len(capacities_bytes_s)
    crossing: list[set[int]] = [set() for _ in capacities_bytes_s]
    for i, path in enumerate(paths):
        for j in path:
            crossing[j].add(i)
    while active:
        shares = {j: (capacities_bytes_s[j] - frozen_load[j]) / len(flows)
                  for j, flows in enumerate(crossing) if flows}
        level = min(min(shares.values(), default=math.inf), min(caps_bytes_s[i] for i in active))
        done = {i for i in active if caps_bytes_s[i] <= level}
        for j, share in shares.items():
            if share <= level * (1.0 + _SAME_LEVEL):
                done |= crossing[j]
        for i in done:
            rates[i] = min(level, caps_bytes_s[i])
            for j in paths[i]:
                frozen_load[j] += rates[i]
                crossing[j].discard(i)
        active -= done
    return rates
