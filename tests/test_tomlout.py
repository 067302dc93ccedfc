import tomllib

import toml  # the reader sd-scripts itself uses for both of its TOML files

from kohaku_prep.tomlout import dumps

DATA = {
    "general": {"rate": 0.15, "zero": 0.0, "tiny": 1e-05, "sep": "|||", "flag": False, "n": 3,
                "quoted": 'a "b" \\ c\n', "unicode": "ハート", "list": ["x", "y"]},
    "datasets": [{"batch_size": 4, "subsets": [{"image_dir": "/a b/c"}, {"image_dir": "/d"}]}],
    "key with space": {"inline": {"k": 1}},
}


def test_both_readers_read_back_what_was_written():
    text = dumps(DATA, "header line\nsecond line")
    assert tomllib.loads(text) == DATA
    assert toml.loads(text) == DATA


def test_output_is_sorted_and_stable():
    text = dumps({"b": 1, "a": {"z": 1, "y": 2}})
    assert text == "b = 1\n\n[a]\ny = 2\nz = 1\n"
    assert dumps(DATA) == dumps(dict(reversed(list(DATA.items()))))


def test_floats_stay_floats():
    assert tomllib.loads(dumps({"x": 0.0, "y": 2.0}))["x"].__class__ is float
