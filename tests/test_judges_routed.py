"""refusal-routed: proxy-refusal on replies that fit its window, refusal-v4 on longer ones; held-out texts of
tests/test_judges_v2_models.py and tests/test_judges_v4_models.py (written for those files, in no training data)."""

from __future__ import annotations

import pytest
from test_judges_v2_models import DEFLECTS, FULFILS, LATE_REFUSAL, REFUSES
from test_judges_v2_models import REQUEST as PLANTS
from test_judges_v4_models import (
    GARDEN_DEFLECTION,
    GARDEN_LATE_REFUSAL,
    GARDEN_REQUEST,
    LONG_ANSWER,
    LONG_DEFLECTION,
    LONG_LATE_REFUSAL,
    REQUEST,
)

from safeglass.judges.base import JudgeInput
from safeglass.judges.fulfilment import RefusalV4Judge
from safeglass.judges.length_router import LengthRoutedRefusalJudge
from safeglass.judges.proxy import ProxyRefusalJudge
from safeglass.judges.proxy_files import fulfilment_v4_key_args, key_args
from safeglass.registry import registry


@pytest.fixture(scope="module")
def routed() -> LengthRoutedRefusalJudge:
    return LengthRoutedRefusalJudge()


def _items(pairs):
    return [JudgeInput(p, r) for p, r in pairs]


def test_a_reply_within_the_window_gets_proxy_refusals_verdict(routed) -> None:
    short = _items([(PLANTS, FULFILS), (PLANTS, DEFLECTS), (PLANTS, REFUSES), (PLANTS, LATE_REFUSAL)])
    assert all(n <= routed.window for n in routed.lengths(short))
    out = routed.judge(short)
    proxy = ProxyRefusalJudge().judge(short)
    assert [(v.flag, v.score) for v in out] == [(v.flag, v.score) for v in proxy]
    assert all("within proxy-refusal's 126-token window: proxy-refusal" in v.reason for v in out)


def test_long_late_refusals_and_deflections_are_caught_where_proxy_refusal_misses_them(routed) -> None:
    long = _items([(REQUEST, LONG_LATE_REFUSAL), (REQUEST, LONG_DEFLECTION), (GARDEN_REQUEST, GARDEN_DEFLECTION),
                   (REQUEST, LONG_ANSWER)])
    assert all(n > routed.window for n in routed.lengths(long))
    assert [v.flag for v in ProxyRefusalJudge().judge(long)] == [False, False, False, False]  # misses all three
    out = routed.judge(long)
    assert [v.flag for v in out] == [True, True, True, False]
    assert [v.flag for v in out] == [v.flag for v in RefusalV4Judge().judge(long)]
    assert all("past proxy-refusal's" in v.reason for v in out)


def test_order_is_kept_across_the_two_judges_and_the_key_follows_both(routed) -> None:
    mixed = _items([(REQUEST, LONG_LATE_REFUSAL), (PLANTS, FULFILS), (REQUEST, LONG_ANSWER), (PLANTS, REFUSES)])
    assert [v.flag for v in routed.judge(mixed)] == [True, False, False, True]
    assert routed.judge([]) == []
    keyer = registry("judges").keyer("refusal-routed")
    assert keyer("refusal-routed", {})["weights"] not in (key_args("proxy-refusal", {})["weights"],
                                                          fulfilment_v4_key_args("refusal-v4", {})["weights"])
    ident = routed.identity()
    assert ident.extra["short"].startswith("proxy-refusal@") and ident.extra["long"].startswith("refusal-v4@")


@pytest.mark.xfail(strict=True, reason="measured 2026-12-08: the garden late refusal is 102 tokens, inside "
                                       "proxy-refusal's window, which calls it compliance (p 0.00)")
def test_a_late_refusal_inside_the_window_is_caught(routed) -> None:
    (v,) = routed.judge(_items([(GARDEN_REQUEST, GARDEN_LATE_REFUSAL)]))
    assert v.flag
