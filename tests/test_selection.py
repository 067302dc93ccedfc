import numpy as np
import pyarrow as pa

from kohaku_prep.dataset.bad_metadata import BadRows
from kohaku_prep.dataset.selection import rank_keys, require_images, sample_pool, select
from kohaku_prep.preset import FiltersSection, Pool, SelectionSection


def posts_table(ids, deleted=(), hidden=(), ext=None):
    ids = np.asarray(ids, np.int64)
    return pa.table({
        "id": ids,
        "is_deleted": np.isin(ids, list(deleted)),
        "is_hidden": np.isin(ids, list(hidden)),
        "file_ext": ext or ["jpg"] * len(ids),
    })


MASK = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """SplitMix64 (Steele, Lea, Flood 2014), in plain Python integers."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def test_rank_keys_are_keyed_splitmix64():
    # the sampler must give the same ids on any machine and NumPy version: its keys are plain integer math
    ids = [1, 2, 3, 7_349_999, 2**40 + 5]
    expected = [splitmix64(i ^ splitmix64(1337)) for i in ids]
    assert rank_keys(np.array(ids), 1337).tolist() == expected
    assert expected[0] == 16722444942502911902


def test_sample_without_replacement_and_deterministic():
    ids = np.arange(1, 100_001)
    a = sample_pool(ids, 5000, seed=7)
    assert len(a) == len(np.unique(a)) == 5000
    assert np.array_equal(a, sample_pool(ids, 5000, seed=7))
    assert not np.array_equal(a, sample_pool(ids, 5000, seed=8))
    assert np.isin(a, ids).all() and np.all(np.diff(a) > 0)


def test_sample_independent_of_input_order():
    ids = np.arange(10, 50_000, 3)
    shuffled = np.random.default_rng(0).permutation(ids)
    assert np.array_equal(sample_pool(ids, 1000, 1), sample_pool(shuffled, 1000, 1))


def test_sample_is_roughly_uniform():
    ids = np.arange(1_000_000)
    picked = sample_pool(ids, 100_000, seed=3)
    per_decile = np.bincount(picked // 100_000, minlength=10)
    assert per_decile.min() > 9_500 and per_decile.max() < 10_500


def test_pools_filters_and_stage_counts():
    ids = list(range(1, 101))
    posts = posts_table(ids, deleted={95, 96}, hidden={97}, ext=["jpg"] * 97 + ["gif", "mp4", "png"])
    sel = SelectionSection(seed=1, pools=[Pool(0, 50, 10), Pool(50, 60, 20), Pool(60, None, "all")])
    result = select(posts, sel, FiltersSection(), BadRows("fail"))
    names = [(s.name, s.kept, s.dropped) for s in result.stages]
    assert names == [
        ("metadata", 100, 0),
        ("pool [0, 50)", 10, 39),
        ("pool [50, 60)", 10, 0),
        ("pool [60, ∞)", 41, 0),
        ("deleted", 59, 2),
        ("hidden (Gold-only or banned)", 58, 1),
        ("not a still image", 56, 2),
    ]
    assert "exceeds the pool's 10: took the whole pool" in result.stages[2].note
    assert len(result.ids) == 56 and 100 in result.ids and 99 not in result.ids
    present = np.array([i for i in ids if i % 10])
    after = require_images(result, present)
    assert after.stages[-1].name == "image not in the archive"
    assert after.stages[-1].dropped == int((result.ids % 10 == 0).sum())


def test_posts_outside_every_pool_are_counted():
    result = select(posts_table(range(1, 11)), SelectionSection(pools=[Pool(5, None, "all")]), FiltersSection(),
                    BadRows("fail"))
    assert ("outside every pool", 0, 4) in [(s.name, s.kept, s.dropped) for s in result.stages]
    assert result.ids.tolist() == [5, 6, 7, 8, 9, 10]


def test_filters_can_be_switched_off():
    posts = posts_table([1, 2], deleted={1}, hidden={2})
    result = select(posts, SelectionSection(), FiltersSection(drop_deleted=False, drop_hidden=False), BadRows("fail"))
    assert result.ids.tolist() == [1, 2]
