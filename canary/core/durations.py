"""Human durations (``15s``, ``10m``, ``1h30m``, ``500ms``) parsed to float seconds.

Policies are written by people and read in reviews, so durations carry their unit; a bare
number is taken as seconds. Inside canary every duration is a float of seconds, which keeps
the pure core free of datetime arithmetic and makes injected clocks trivial.
"""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"


def parse_duration(value: object) -> float:
    """Seconds in ``value``: a number of seconds or a string such as ``1h30m``.

    Raises ValueError with the accepted forms, so the policy error tells people what to write.
    """
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like 15s, 10m, 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty duration; write e.g. 15s, 10m, 2h or 1h30m")
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or pos == 0:
                raise ValueError(
                    f"invalid duration {value!r}; write e.g. 15s, 10m, 2h, 1h30m or 500ms"
                ) from None
    else:
        raise ValueError("a duration must be a number of seconds or a string like 15s, 10m, 2h")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be a finite, non-negative time")
    return seconds


def format_duration(seconds: float) -> str:
    """Shortest readable form of ``seconds``: 90 -> ``1m30s``, 0.5 -> ``500ms``."""
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    total = round(seconds)
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            count, total = divmod(total, size)
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
