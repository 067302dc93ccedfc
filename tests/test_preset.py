import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import PRESET_GOLDEN, PRESET_GOLDEN_FILES, TESTS, preset_golden

from kohaku_prep.cli import main
from kohaku_prep.errors import PrepError
from kohaku_prep.preset import (
    LYCORIS_PRESET_DIR,
    PRESET_DIR,
    find_preset,
    parse_override,
    resolve,
    shipped_lycoris_presets,
    shipped_presets,
)

SOURCE_PRESETS = TESTS.parent / "presets"  # the folder the package's presets are installed from
SHIPPED = shipped_presets()


def test_every_preset_in_the_source_tree_is_shipped_listed_and_has_its_goldens():
    """Found by recursive glob; their count is the count of golden sets, so a preset added, removed or hidden
    fails here until its goldens follow."""
    found = sorted(p.relative_to(SOURCE_PRESETS) for p in SOURCE_PRESETS.rglob("*.toml"))
    recipes = [p for p in found if p.parts[0] != LYCORIS_PRESET_DIR.name]
    golden_sets = sorted(d.name for d in PRESET_GOLDEN.iterdir())
    listed = [line.split()[0] for line in CliRunner().invoke(main, ["presets"]).output.splitlines()]
    assert len(recipes) == len(golden_sets) == len(SHIPPED) == len(listed) > 0
    assert [p.relative_to(PRESET_DIR) for p in SHIPPED] == recipes
    assert [p.stem for p in SHIPPED] == golden_sets == listed
    for name in golden_sets:
        assert sorted(f.name for f in (PRESET_GOLDEN / name).iterdir()) == PRESET_GOLDEN_FILES, name


def test_every_lycoris_preset_is_shipped_and_named_by_a_recipe():
    found = sorted(p.relative_to(SOURCE_PRESETS) for p in (SOURCE_PRESETS / LYCORIS_PRESET_DIR.name).rglob("*.toml"))
    assert [p.relative_to(PRESET_DIR) for p in shipped_lycoris_presets()] == found
    named = {resolve(path).preset.network.preset for path in SHIPPED} - {""}  # "": LyCORIS's own default
    assert sorted(named) == [str(p) for p in found] and found


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_preset_resolves_and_round_trips(path, tmp_path):
    resolved = resolve(path)
    again = tmp_path / "again.toml"
    again.write_text(resolved.to_toml())
    assert resolve(again).preset == resolved.preset


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_preset_starts_with_what_it_reproduces_and_how_to_run_it(path):
    text = path.read_text()
    assert text.startswith("# ") and "kohaku-prep dataset --preset" in text


def test_epsilon_values_are_the_recipe():
    p = resolve(find_preset("epsilon")).preset
    assert [(q.start, q.end, q.take) for q in p.selection.pools] == [
        (0, 2_000_000, 1_000_000), (2_000_000, 5_000_000, 2_000_000), (5_000_000, None, "all")]
    assert (p.caption.quality, p.caption.quality_max_id, p.caption.year_quirks) == ("epsilon", 7_100_000, True)
    d = p.dataset
    assert (d.resolution, d.min_bucket_reso, d.max_bucket_reso, d.bucket_reso_steps, d.batch_size) == (
        1024, 256, 4096, 64, 4)
    assert d.shuffle_caption and d.caption_tag_dropout_rate == 0.15


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_resolved_preset_matches_golden(path):
    text = resolve(path).to_toml().replace(str(PRESET_DIR), "<presets>")
    assert text == preset_golden(path, "resolved.toml")


def test_unknown_and_mistyped_keys_are_all_reported_with_file_and_fix(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[selection]\nsed = 3\n[dataset]\nbatch_size = "4"\nshuffle_caption = 1\n[captions]\nx = 1\n')
    with pytest.raises(PrepError) as err:
        resolve(bad)
    assert str(err.value).splitlines() == [
        "4 problem(s) in the preset:",
        f"  {bad}: unknown key 'captions'; did you mean 'caption'?",
        f"  {bad}: unknown key 'selection.sed'; did you mean 'selection.seed'?",
        f"  {bad}: 'dataset.batch_size' must be an integer, got '4'",
        f"  {bad}: 'dataset.shuffle_caption' must be true or false, got 1"]


def test_layers_and_overrides_in_order(tmp_path):
    user = tmp_path / "user.toml"
    user.write_text("[selection]\nseed = 5\n[dataset]\nbatch_size = 2\n")
    resolved = resolve(find_preset("epsilon"), user, ["dataset.batch_size=8", "selection.pools.2.take=10"])
    p = resolved.preset
    assert (p.selection.seed, p.dataset.batch_size, p.selection.pools[2].take) == (5, 8, 10)
    assert resolved.overrides == ["override dataset.batch_size = 8 (was 2)",
                                  "override selection.pools[2].take = 10 (was 'all')"]
    assert resolved.layers[1:] == [str(find_preset("epsilon")), str(user)]


def test_override_errors_name_the_override():
    with pytest.raises(PrepError, match=r"override: 'selection.seed' must be an integer, got 'x'"):
        resolve(find_preset("epsilon"), None, ["selection.seed=x"])
    with pytest.raises(PrepError, match="no element 7"):
        resolve(find_preset("epsilon"), None, ["selection.pools.7.take=1"])
    with pytest.raises(PrepError, match="expected key=value"):
        parse_override("selection.seed")


def test_override_values_parse_as_toml_else_string():
    assert parse_override("a.b=0.5") == (["a", "b"], 0.5)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("input.metadata=/data/x.parquet") == (["input", "metadata"], "/data/x.parquet")


@pytest.mark.parametrize("override, message", [
    ("dataset.bucket_reso_steps=48", "multiple of 32"),
    ("dataset.resolution=128", "min_bucket_reso <= resolution"),
    ("dataset.caption_tag_dropout_rate=1.5", r"in \[0, 1\)"),
    ("selection.pools.1.start=1000", "overlaps"),
    ("selection.pools.0.take=-1", "take must be"),
    ("training.mixed_precision=bf16", "full_fp16 needs"),
    ("launch.num_machines=3", "positive multiple"),
    ("launch.machine_rank=1", "machine_rank must be"),
    ("optimizer.betas=[0.9]", "two numbers"),
    ("samples.every_n_steps=0", "every_n_steps must be >= 1"),
    ("schedule.gradient_accumulation_steps=0", "must be >= 1"),
])
def test_value_checks(override, message):
    with pytest.raises(PrepError, match=message):
        resolve(find_preset("epsilon"), None, [override])


def test_separator_leak_is_refused():
    with pytest.raises(PrepError, match=r"'\|\|\|' separator"):
        resolve(find_preset("epsilon"), None, ["dataset.shuffle_caption=false",
                                               "dataset.caption_tag_dropout_rate=0"])


def test_float_key_accepts_integer_and_stores_float():
    p = resolve(find_preset("epsilon"), None, ["dataset.caption_tag_dropout_rate=0"]).preset
    assert p.dataset.caption_tag_dropout_rate == 0.0 and isinstance(p.dataset.caption_tag_dropout_rate, float)


def test_unreadable_preset_files(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[dataset\n")
    with pytest.raises(PrepError, match="not valid TOML"):
        resolve(broken)
    with pytest.raises(PrepError, match="no preset file 'nope' and no shipped preset of that name"):
        find_preset("nope")
    with pytest.raises(PrepError, match="no such preset file"):
        resolve(tmp_path / "missing.toml")
    assert tomllib.loads(resolve(find_preset("epsilon")).to_toml())["selection"]["seed"] == 1337


def test_a_users_file_wins_over_a_shipped_one_of_the_same_name(tmp_path, monkeypatch):
    from kohaku_prep.train import run

    monkeypatch.chdir(tmp_path)
    assert find_preset("epsilon") == PRESET_DIR / "epsilon.toml"
    assert run.preset_file("lycoris/delta_lokr.toml") == LYCORIS_PRESET_DIR / "delta_lokr.toml"
    (tmp_path / "epsilon.toml").write_text("[selection]\nseed = 5\n")
    (tmp_path / "lycoris").mkdir()
    (tmp_path / "lycoris" / "delta_lokr.toml").write_text("enable_conv = false\n")
    assert find_preset("epsilon") == find_preset("epsilon.toml") == Path("epsilon.toml")
    assert run.preset_file("lycoris/delta_lokr.toml") == Path("lycoris/delta_lokr.toml")
    with pytest.raises(PrepError, match="no shipped preset of that name"):
        find_preset("delta_lokr")  # a LyCORIS preset is not a recipe
