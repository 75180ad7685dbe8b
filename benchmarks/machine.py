"""What every benchmark prints beside its figures: how busy the machine was while it ran. A figure
taken while other jobs shared the cores is lower than the machine's, by about their share."""

import os


def load_average() -> str:
    """The 1, 5 and 15-minute load averages and the cores, e.g. "0.12 0.30 0.41 (2 cores)"."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} cores)"
