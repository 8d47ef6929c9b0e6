"""What every benchmark prints beside a figure: its spread over the runs and the machine's load.

The development machines are shared (2 cores, other jobs running), so one number says little: a figure is
given as min / median / max of its runs, next to the 1-minute load average when it was measured.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``min / median / max`` of ``values``, each formatted with ``fmt``."""
    ordered = sorted(values)
    return " / ".join(fmt.format(v) for v in (ordered[0], statistics.median(ordered), ordered[-1]))


def load() -> str:
    """The load averages now (1, 5, 15 minutes), for the header of a table."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
