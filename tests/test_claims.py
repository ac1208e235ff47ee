"""The claims mechanism: claims checked on a run, glued as records, shown when they fail,
counted on the status page."""

import math

import pytest

from recon.book import claims, status


def test_a_claim_keeps_plain_values_and_a_bool():
    import numpy as np

    c = claims.claim("all_recovered", "Every point is recovered.", np.bool_(True),
                     share=np.float64(1.0), worst=float("nan"), per_size={"a": np.int64(3)})
    assert c.holds is True and c.values == {"share": 1.0, "worst": None, "per_size": {"a": 3}}
    assert type(c.values["share"]) is float
    with pytest.raises(ValueError, match="identifier"):
        claims.claim("two words", "x", True)


def test_records_are_unique_and_counted():
    good = claims.claim("a", "A holds.", True, x=1)
    bad = claims.claim("b", "B holds.", False, x=math.pi)
    records = claims.as_records([good, bad])
    assert records == [{"name": "a", "holds": True, "values": {"x": 1}},
                       {"name": "b", "holds": False, "values": {"x": math.pi}}]
    assert claims.count(records) == {"supported": 1, "total": 2, "failing": ["b"]}
    with pytest.raises(ValueError, match="unique"):
        claims.as_records([good, good])


def test_only_a_failing_claim_is_shown_and_with_its_numbers():
    good = claims.claim("a", "A holds.", True, x=1)
    bad = claims.claim("b", "B <holds>.", False, x=2)
    assert claims.show([good, bad], "a") is None
    shown = claims.show([good, bad], "a", "b")
    html = shown._repr_html_()
    assert "admonition warning" in html and "B &lt;holds&gt;." in html and "x = 2" in html
    assert "A holds." not in html
    assert "not supported by this run" in repr(shown)
    assert claims.show([good, bad]) is not None  # no names: all of them
    with pytest.raises(KeyError, match="unknown claim"):
        claims.show([good], "renamed")
    assert claims.show([good], "absent", missing_ok=True) is None


def test_the_claims_table_lists_every_claim():
    table = claims.table([claims.claim("a", "A holds.", True, x=1),
                          claims.claim("b", "B holds.", False)])
    assert table["claim"].tolist() == ["a", "b"] and table["holds"].tolist() == [True, False]
    assert table["checked on"].tolist() == ["x = 1", "no numbers"]


def test_the_status_page_counts_the_supported_claims():
    records = [
        {"notebook": "law", "profile": "smoke", "parameters": {}, "seconds": 1.0,
         "success": True, "finished": "2026-12-01T00:00:00+00:00",
         "claims": {"supported": 2, "total": 3, "failing": ["slope_holds_one"]}},
        {"notebook": "theorems", "profile": "smoke", "parameters": {}, "seconds": 1.0,
         "success": True, "finished": "2026-12-01T00:00:00+00:00",
         "claims": {"supported": 4, "total": 4, "failing": []}},
    ]
    page = status.render_status(records, {}, ["law", "theorems"], ["law", "theorems"])
    assert "claims supported" in page
    assert "**2 / 3** (not supported: slope_holds_one)" in page and "| 4 / 4 |" in page
