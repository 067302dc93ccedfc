"""The year of created_at: the column-wise ISO path agrees with dateutil (HakuBooru's parser) everywhere."""
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference.reference_caption import parse_year

from kohaku_prep.dataset.years import created_years, lenient_year

ISSUE_CASES = {
    "2010/05/03 12:00:00": 2010, "20100503T120000": 2010, " 2008-01-01T00:00:00": 2008,
    "2010-13-45T00:00:00": -1, "2005-05-23T23:35:31.000-04:00": 2005, "2005-05-24T12:35:31.000+09:00": 2005,
    "2012-02-29": 2012, "2011-02-29": -1, "2011-04-31T00:00:00": -1, "2000-02-29T23:59:59Z": 2000,
    "1900-02-29": -1, "2010-01-01T24:00:00": -1, "12:30": -1, "": -1, "not a date": -1,
}


@pytest.mark.parametrize("text,year", list(ISSUE_CASES.items()))
def test_lenient_years(text, year):
    assert created_years(pa.chunked_array([pa.array([text, None])])).tolist() == [year, -1]
    assert lenient_year(text) == year


def _two(lo, hi):
    return st.integers(lo, hi).map(lambda v: f"{v:02d}")


# ISO-shaped strings with fields in and out of range, so that both paths are exercised
iso_like = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, tz: f"{y:04d}-{mo}-{d}" + (f"{sep}{h}:{mi}:{s}{frac}{tz}" if sep else ""),
    st.integers(1000, 2999), _two(0, 13), _two(0, 32), st.sampled_from(["", "T", " "]), _two(0, 25), _two(0, 60),
    _two(0, 61), st.sampled_from(["", ".000", ".5"]), st.sampled_from(["", "Z", "-04:00", "+0900", "+24:00"]))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(iso_like, st.text(max_size=12)), min_size=1, max_size=20))
def test_fast_path_agrees_with_dateutil(texts):
    expected = [lenient_year(t) for t in texts]
    assert created_years(pa.array(texts, pa.string())).tolist() == expected
    assert [parse_year(t) or -1 for t in texts] == expected  # the reference, written on its own
