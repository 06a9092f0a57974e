"""Load profiles: how much load at each second of a run (pure).

Syntax: comma-separated points `SECONDS:LOAD`, with LOAD either a request rate
(`200rps`, or a bare number: open loop, requests are sent on schedule whether or not
earlier ones finished) or a concurrency (`16c`: closed loop, N clients each sending
the next request when the last one returned). One profile uses one kind.

- A load holds from its point until the next point (a step);
- `~` before the load ramps linearly from the previous point to this one;
- the run ends at the last point, whose load must be 0
  (or at `--duration` when the last load is not 0).

    0:20rps,30:200rps,90:0          20 req/s, a step to 200 at 30 s, stop at 90 s
    0:10,60:~300,120:~10,150:0      ramp up to 300 req/s over a minute and down again
    0:2c,20:32c,80:0                2 then 32 concurrent clients
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["rate", "concurrency"]

_POINT = re.compile(
    r"^\s*(?P<t>\d+(?:\.\d+)?)\s*s?\s*:\s*(?P<ramp>~)?\s*(?P<v>\d+(?:\.\d+)?)\s*(?P<unit>rps|c)?\s*$"
)


class ProfileError(ValueError):
    """The profile text does not follow the documented syntax."""


@dataclass(frozen=True)
class Point:
    at: float
    load: float
    ramp: bool = False


@dataclass(frozen=True)
class Profile:
    kind: Kind
    points: tuple[Point, ...]
    end: float

    def load_at(self, t: float) -> float:
        """Requests per second (rate) or clients (concurrency) at `t` seconds."""
        if t < 0 or t >= self.end:
            return 0.0
        current = self.points[0]
        for point in self.points[1:]:
            if t < point.at:
                if point.ramp:
                    share = (t - current.at) / (point.at - current.at)
                    return current.load + (point.load - current.load) * share
                return current.load
            current = point
        return current.load

    @property
    def peak(self) -> float:
        return max(p.load for p in self.points)


def parse_profile(text: str, *, duration: float | None = None) -> Profile:
    """Parse the profile syntax above; ProfileError says what is wrong and where."""
    if not text.strip():
        raise ProfileError("empty load profile; e.g. '0:20rps,30:200rps,90:0'")
    points: list[Point] = []
    kinds: set[Kind] = set()
    for raw in text.split(","):
        match = _POINT.match(raw)
        if match is None:
            raise ProfileError(
                f"bad profile point {raw.strip()!r}: expected SECONDS:LOAD with LOAD like "
                "'200rps', '200', '~200rps' (ramp) or '16c' (concurrency)"
            )
        at, load = float(match["t"]), float(match["v"])
        if match["unit"] == "c":
            kinds.add("concurrency")
            if load != int(load):
                raise ProfileError(f"concurrency must be a whole number, not {load:g}")
        elif load > 0 or match["unit"] == "rps":
            kinds.add("rate")
        if points and at <= points[-1].at:
            raise ProfileError(f"profile times must increase: {at:g} s after {points[-1].at:g} s")
        points.append(Point(at=at, load=load, ramp=bool(match["ramp"])))
    if len(kinds) > 1:
        raise ProfileError("a profile is either rates (rps) or concurrencies (c), not both")
    if points[0].at != 0:
        points.insert(0, Point(at=0.0, load=0.0))
    if points[0].ramp:
        raise ProfileError("the first point cannot ramp")
    kind: Kind = kinds.pop() if kinds else "rate"
    last = points[-1]
    if last.load == 0 and len(points) > 1:
        end = last.at
    elif duration is not None:
        if duration <= last.at:
            raise ProfileError(f"--duration {duration:g} s ends before the last point")
        end = duration
    else:
        raise ProfileError(
            "the profile must end with a load of 0 (e.g. ',90:0') or be given a --duration"
        )
    return Profile(kind=kind, points=tuple(points), end=end)
