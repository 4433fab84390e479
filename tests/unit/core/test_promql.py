import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.core.promql import Matcher, SelectorError, parse_selector


def test_parses_metric_and_matchers():
    sel = parse_selector('model_requests_total{model="credit-risk", code=~"5.."}')
    assert sel.metric == "model_requests_total"
    assert sel.matchers == (
        Matcher("model", "=", "credit-risk"),
        Matcher("code", "=~", "5.."),
    )


def test_bare_metric_and_empty_braces():
    assert parse_selector("up").matchers == ()
    assert parse_selector("up{}").matchers == ()


def test_escaped_quote_inside_value_is_kept_and_rerendered():
    sel = parse_selector(r'm{a="x\"y"}')
    assert sel.matchers[0].value == 'x"y'
    assert parse_selector(sel.render()) == sel


def test_render_appends_extra_matchers():
    sel = parse_selector('m{model="a"}')
    text = sel.render((Matcher("version", "=", "3"),))
    assert text == 'm{model="a", version="3"}'


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('m{model="a"', "unbalanced braces"),
        ('m{model="a}', "unterminated string"),
        ('m{model="a"}}', "unexpected text"),
        ("rate(m[5m])", "unexpected text"),
        ('m{model="a"} or vector(1)', "unexpected text"),
        ("m{model=a}", "double-quoted"),
        ('m{model=="a"}', "double-quoted"),
        ('{model="a"}', "metric name"),
        ('m{code=~"5.("}', "regular expression"),
        ('m{"model"="a"}', "label name"),
    ],
)
def test_rejects_anything_but_a_plain_selector(text, fragment):
    with pytest.raises(SelectorError, match=fragment):
        parse_selector(text)


label = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
value = st.text(max_size=12)


@given(st.lists(st.tuples(label, st.sampled_from(["=", "!="]), value), max_size=4))
def test_render_parse_round_trip_with_any_value(matchers):
    """Any label value, quotes and braces included, survives rendering as one matcher."""
    from canary.core.promql import Selector

    sel = Selector("metric_x", tuple(Matcher(lbl, op, val) for lbl, op, val in matchers))
    assert parse_selector(sel.render()) == sel
