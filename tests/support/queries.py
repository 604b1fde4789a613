"""Query strings for the REST fuzzers: near-valid and garbled ``limit``, cursors and seqs."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

from hypothesis import strategies as st

RAW_QUERIES = [
    "",
    "limit",
    "limit=",
    "&&&",
    "limit=%ff",
    "before=%00",
    "before=%",
    "limit=1&limit=2",
    "before_seq=1&after_seq=1",
    "limit=1e3",
    "limit=0x10",
    "limit=%2B5",
    "after_seq=%20",
]


def _b64(raw: str) -> str:
    encoded = base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass"))
    return encoded.decode().rstrip("=")


def _cursors() -> st.SearchStrategy[str]:
    """Cursor-like values: base64 of a time and an id (the `next` shape), of any text,
    with times out of range too, and plain garbage."""
    times = st.integers() | st.integers(min_value=2**63) | st.integers(max_value=-(2**63))
    shaped = st.tuples(times, st.text(max_size=20)).map(lambda t: _b64(f"{t[0]}:{t[1]}"))
    return shaped | st.text(max_size=30).map(_b64) | st.text(max_size=30)


def _numbers(low: int, high: int) -> st.SearchStrategy[str]:
    """Mostly near the valid range, sometimes huge, negative, fractional or text."""
    near = st.integers(low, high).map(str)
    odd = st.integers() | st.integers(min_value=2**63) | st.integers(max_value=-(2**63))
    return st.one_of(near, near, odd.map(str), st.floats().map(str), st.text(max_size=10))


PARAMETERS = {
    "limit": _numbers(-2, 110),
    "before": _cursors(),
    "before_seq": _numbers(-2, 20),
    "after_seq": _numbers(-2, 20),
}


def query_strings(*names: str) -> st.SearchStrategy[str]:
    """A query string, ``?`` included (or nothing): some of the route's parameters
    ``names``, now and then an unknown one, or a raw garbled string."""
    known = st.fixed_dictionaries({}, optional={n: PARAMETERS[n] for n in names})
    extra = st.lists(st.tuples(st.text(max_size=8), st.text(max_size=10)), max_size=1)
    rarely_extra = st.one_of(st.just([]), st.just([]), st.just([]), extra)
    pairs = st.tuples(known, rarely_extra).map(lambda t: [*t[0].items(), *t[1]])
    encoded = pairs.map(lambda p: urlencode(p, encoding="utf-8", errors="surrogatepass"))
    return (encoded | encoded | st.sampled_from(RAW_QUERIES)).map(lambda q: f"?{q}" if q else "")


def query_for(path: str) -> st.SearchStrategy[str]:
    """The query strings of a GET route's path (its own parameters, or none)."""
    if path.rstrip("/").endswith("/conversations"):
        return query_strings("limit", "before")
    if path.endswith("/messages"):
        return query_strings("before_seq", "after_seq", "limit")
    return query_strings()
