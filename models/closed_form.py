"""The closed form of the textbook pass-end rule for a constant dirty rate.

With RAM M, effective rate R, dirty rate D, rho = D / R < 1 and downtime limit d: pass i sends
V_i = M rho^i in T_i = V_i / R; pre-copy stops at the first n with V_n <= R d. Then
pre-copy time = (M / R)(1 - rho^n) / (1 - rho), stop-and-copy = M rho^n / R and
bytes sent = M (1 - rho^(n+1)) / (1 - rho).

>>> r = closed_form(4 * 2**30, 1.25e9, 250e6, 0.3)
>>> r.iterations, round(r.precopy_time_s, 2), round(r.downtime_s, 3), round(r.bytes_sent / 1e9, 2)
(2, 4.12, 0.137, 5.33)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ClosedForm:
    converged: bool
    # passes after the first before the stop (n in the formulas above)
    iterations: int
    precopy_time_s: float
    downtime_s: float
    total_time_s: float
    bytes_sent: float


def closed_form(memory_bytes: float, rate_bytes_s: float, dirty_bytes_s: float,
                max_downtime_s: float) -> ClosedForm:
    """Solves the pass-end rule. Does not converge when rho >= 1 and M > R d."""
    limit_bytes = rate_bytes_s * max_downtime_s
    if memory_bytes <= limit_bytes:
        n = 0
    else:
        rho = dirty_bytes_s / rate_bytes_s
        if rho >= 1.0:
            return ClosedForm(False, 0, math.inf, math.inf, math.inf, math.inf)
        if rho == 0.0:
            n = 1
        else:
            # the first n with M rho^n <= R d, guarded against rounding at the boundary
            n = max(1, math.ceil(math.log(limit_bytes / memory_bytes) / math.log(rho) - 1e-12))
            while memory_bytes * rho**n > limit_bytes:
                n += 1
    rho = dirty_bytes_s / rate_bytes_s
    geometric = n if rho == 1.0 else (1 - rho**n) / (1 - rho)
    precopy_s = memory_bytes / rate_bytes_s * geometric
    downtime_s = memory_bytes * rho**n / rate_bytes_s
    bytes_sent = memory_bytes * ((n + 1) if rho == 1.0 else (1 - rho ** (n + 1)) / (1 - rho))
    return ClosedForm(True, n, precopy_s, downtime_s, precopy_s + downtime_s, bytes_sent)
