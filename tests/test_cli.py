"""The command line: one-line errors with a non-zero exit, and the commands a user types."""
import os
import re
import signal
import tomllib

import pyarrow
import pytest
from click.testing import CliRunner
from helpers import GOLDEN, preset_golden

from kohaku_prep import cli
from kohaku_prep.cli import main
from kohaku_prep.preset import PRESET_DIR, shipped_presets


def run(*args):
    return CliRunner().invoke(main, list(args))


def overridden(metadata, images, out):
    return [f"override input.metadata = '{metadata}' (was '')", f"override input.images = '{images}' (was '')",
            f"override output.dir = '{out}' (was '')"]


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    result = run("dataset", "--metadata", str(tmp_path / "none"), "--images", str(tmp_path), "--out",
                 str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.output.splitlines() == [*overridden(tmp_path / "none", tmp_path, tmp_path / "out"),
                                          f"error: {tmp_path / 'none'}: metadata not found"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_missing_output_flag():
    result = run("dataset", "--metadata", "x", "--images", "y")
    assert result.exit_code == 1
    assert result.output.splitlines() == ["override input.metadata = 'x' (was '')",
                                          "override input.images = 'y' (was '')",
                                          "error: set --out (see kohaku-prep dataset --help)"]


def test_dataset_without_arguments_names_every_missing_option():
    result = run("dataset")
    assert result.exit_code == 1
    assert result.output == "error: set --metadata, --images, --out (see kohaku-prep dataset --help)\n"


def test_dataset_end_to_end_prints_overrides_and_stages(sample_root, tmp_path):
    out = tmp_path / "ds"
    result = run("dataset", "--metadata", str(sample_root / "metadata" / "normalized"), "--images",
                 str(sample_root / "images"), "--out", str(out), "selection.pools.0.take=320",
                 "selection.pools.1.take=650", "output.ids_per_folder=1000000")
    assert result.exit_code == 0, result.output
    # the whole output, less the time the read took
    text = re.sub(r"read in \d+\.\d s;", "read in <seconds> s;", result.output)
    assert text.replace(str(sample_root), "<sample>").replace(str(out), "<out>") == \
        (GOLDEN / "cli" / "dataset.txt").read_text(encoding="utf-8")
    again = run("dataset", "--metadata", str(sample_root / "metadata" / "flat"), "--images",
                str(sample_root / "images"), "--out", str(out))
    assert again.exit_code == 1
    assert again.output.splitlines() == [
        *overridden(sample_root / "metadata" / "flat", sample_root / "images", out),
        f"error: {out}: already holds a dataset (its preset.toml: another build, perhaps of another preset or seed); "
        "pass --force to replace it"]


def test_presets_lists_shipped_presets():
    result = run("presets")
    assert result.exit_code == 0
    assert result.output == "".join(preset_golden(path, "listing.txt") for path in shipped_presets())


def test_validate_prints_the_resolved_preset():
    result = run("validate", "epsilon", "selection.seed=7")
    assert result.exit_code == 0
    override = "override selection.seed = 7 (was 1337)"
    (epsilon,) = [path for path in shipped_presets() if path.stem == "epsilon"]
    layer = "# layer: <presets>/epsilon.toml\n"
    expected = preset_golden(epsilon, "resolved.toml").replace(layer, f"{layer}# {override}\n").replace(
        "[selection]\nseed = 1337\n", "[selection]\nseed = 7\n")
    assert result.output.replace(str(PRESET_DIR), "<presets>") == f"{override}\n{expected}"
    toml_text = result.output[result.output.index("# The resolved preset"):]
    assert tomllib.loads(toml_text)["selection"]["seed"] == 7


def test_validate_reports_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[dataset]\nbatch = 4\nresolution = '1024'\n")
    result = run("validate", str(bad))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "error: 2 problem(s) in the preset:",
        f"  {bad}: unknown key 'dataset.batch'; did you mean 'dataset.batch_size'?",
        f"  {bad}: 'dataset.resolution' must be an integer, got '1024'"]


def test_sample_command(tmp_path):
    result = run("sample", str(tmp_path / "s"), "--posts", "200")
    assert result.exit_code == 0
    assert result.output == \
        f"sample: 200 posts, 13 tar shards, 11 image(s) left out of the archive, in {tmp_path / 's'}\n"
    assert (tmp_path / "s" / "metadata" / "normalized" / "posttagrelation.parquet").exists()


def test_plan_command(sample_dataset):
    result = run("plan", f"run.dataset={sample_dataset}", "--seconds-per-step", "50")
    assert result.exit_code == 0, result.output
    assert result.output.replace(str(sample_dataset), "<dataset>") == (GOLDEN / "cli" / "plan.txt").read_text()


def test_train_refuses_to_launch_when_preflight_fails(sample_dataset, tmp_path):
    result = run("train", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run'}")
    assert result.exit_code == 1 and "preflight checks failed; nothing was launched" in result.output
    check = run("train", "--check", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run2'}")
    assert check.exit_code == 1 and not (tmp_path / "run2").exists()


def test_a_ctrl_c_during_pyarrows_pandas_import_is_held_back_then_raised(monkeypatch):
    # pyarrow swallows an interrupt inside that import (and leaves the import lock held): the Ctrl-C must
    # reach the import finished, and stop the command right after it
    finished = []

    class Array:
        def to_numpy(self, zero_copy_only):
            os.kill(os.getpid(), signal.SIGINT)
            finished.append(zero_copy_only)

    monkeypatch.setattr(pyarrow, "array", lambda values: Array())
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        cli._let_pyarrow_import_pandas()
    assert finished == [False]
    assert signal.getsignal(signal.SIGINT) is before
