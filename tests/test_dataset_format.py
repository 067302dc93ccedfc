"""The dataset format's rules, the same whichever form (scalar or column-wise) applies them."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kohaku_prep import dataset_format

EXTENSIONS = ["jpg", "png", "webp"]


@settings(deadline=None)  # the first call loads pyarrow's compute kernels
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, len(EXTENSIONS) - 1)), min_size=1, max_size=50),
       st.integers(1, 10**6))
def test_image_paths_put_each_image_in_its_subset_folder(posts, ids_per_folder):
    ids, ext_codes = (np.array(column, np.int64) for column in zip(*posts, strict=True))
    got = dataset_format.image_paths(ids, ext_codes, EXTENSIONS, ids_per_folder).to_pylist()
    want = [f"{dataset_format.subset_folder(i // ids_per_folder)}/{i}.{EXTENSIONS[e]}" for i, e in posts]
    assert got == want


def test_subset_folders_sort_as_their_ids_do():
    assert dataset_format.subset_folder(7) == "images/00007"
    assert dataset_format.subset_folder(7349) == "images/07349"
    assert dataset_format.subset_folder(123456) == "images/123456"  # wider than the padding: still unique
