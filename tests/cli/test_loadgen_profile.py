"""Load profiles and the per-second statistics of the load generator (pure parts)."""

from __future__ import annotations

import pytest

from gantry_cli.loadgen.profile import ProfileError, parse_profile
from gantry_cli.loadgen.stats import Record, percentile, pod_share, summary, timeline


def test_step_profile() -> None:
    p = parse_profile("0:20rps,30:200rps,90:0")
    assert p.kind == "rate" and p.end == 90
    assert [p.load_at(t) for t in (0, 29.9, 30, 89.9, 90, 120)] == [20, 20, 200, 200, 0, 0]
    assert p.peak == 200


def test_ramp_and_bare_numbers() -> None:
    p = parse_profile("0:10, 60:~310, 90:0")
    assert p.load_at(30) == pytest.approx(160)
    assert p.load_at(60) == 310


def test_concurrency_and_duration() -> None:
    p = parse_profile("0:2c,20:32c", duration=40)
    assert p.kind == "concurrency" and p.end == 40
    assert p.load_at(10) == 2 and p.load_at(25) == 32


def test_profile_not_starting_at_zero_idles_first() -> None:
    p = parse_profile("5:50rps,10:0")
    assert p.load_at(1) == 0 and p.load_at(6) == 50


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty load profile"),
        ("0:20rps,abc", "bad profile point 'abc'"),
        ("0:20rps,10:5c,20:0", "either rates"),
        ("0:20,10:30,5:0", "must increase"),
        ("0:20rps,30:200rps", "must end with a load of 0"),
        ("0:2.5c,9:0", "whole number"),
        ("0:~20,9:0", "cannot ramp"),
    ],
)
def test_bad_profiles_say_why(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profile(text)


def test_duration_before_the_last_point_is_an_error() -> None:
    with pytest.raises(ProfileError, match="ends before"):
        parse_profile("0:1,30:2", duration=10)


def test_timeline_summary_and_share() -> None:
    records = [
        Record(0.1, 10, True, "a"),
        Record(0.5, 30, True, "b"),
        Record(0.9, 0, False, "a"),
        Record(1.2, 20, True, "a"),
        Record(5.0, 99, True, "a"),  # after the run: ignored by the timeline
    ]
    rows = timeline(records, 2, target_load=[3, 1], replicas={0: 1, 1: 2})
    assert rows[0] == {
        "t": 0,
        "target_load": 3,
        "sent": 3,
        "ok": 2,
        "errors": 1,
        "p50_ms": 10,
        "p95_ms": 30,
        "replicas": 1,
        "pods": {"a": 1, "b": 1},
    }
    assert rows[1]["sent"] == 1 and rows[1]["replicas"] == 2
    s = summary(records, 2.0)
    assert (s["sent"], s["ok"], s["errors"]) == (5, 4, 1)
    assert pod_share(records) == {"a": 0.75, "b": 0.25}
    assert percentile([], 95) is None
    assert percentile([1, 2, 3, 4], 50) == 2
