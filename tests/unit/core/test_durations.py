import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        ("2.5m", 150.0),
        (30, 30.0),
        (0.25, 0.25),
        ("45", 45.0),
    ],
)
def test_parses_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["15q", "", "m", "1h 30m", "s15", "-5s", -1, True, None, "nan"])
def test_rejects_bad_durations(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@given(st.integers(min_value=0, max_value=10 * 86400))
def test_format_then_parse_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == seconds
