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
    # only a finite cap can freeze a flow before its links fill
    capped = {i for i in active if caps_bytes_s[i] < math.inf}
    crossing: dict[int, set[int]] = {}
    for i, path in enumerate(paths):
        for j in path:
            crossing.setdefault(j, set()).add(i)
    frozen_load = dict.fromkeys(crossing, 0.0)
    # each link's share of what is left; only the links a freeze touched change
    shares = {j: (capacities_bytes_s[j] - 0.0) / len(flows) for j, flows in crossing.items()}
    while active:
        level = min(min(shares.values(), default=math.inf),
                    min((caps_bytes_s[i] for i in capped), default=math.inf))
        # nothing left to bound them: flows on no link (or only on emptied ones) get their caps
        done = set(active) if level == math.inf else {i for i in capped if caps_bytes_s[i] <= level}
        bound = level * (1.0 + _SAME_LEVEL)
        for j in [j for j, share in shares.items() if share <= bound]:
            done |= crossing[j]
        # every flow frozen now gets `level` (a cap that binds equals it), so a link's load grows by
        # `level` once per flow of it frozen, added one by one as flow by flow would
        for i in done:
            rates[i] = level
        active -= done
        if not active:
            break  # the last level (often the only one): what is left on the links is not needed
        capped -= done
        touched: set[int] = set()
        for i in done:
            touched.update(paths[i])
        for j in touched:
            flows = crossing[j]
            before = len(flows)
            flows -= done
            load = frozen_load[j]
            for _ in range(before - len(flows)):
                load += level
            frozen_load[j] = load
            if flows:
                shares[j] = (capacities_bytes_s[j] - load) / len(flows)
            else:
                del shares[j]
    return rates
