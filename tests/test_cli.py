"""The command line: one-line errors with a non-zero exit, and the commands a user types."""
import tomllib

from click.testing import CliRunner
from helpers import preset_golden

from kohaku_prep.cli import main
from kohaku_prep.preset import shipped_presets


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    result = run("dataset", "--metadata", str(tmp_path / "none"), "--images", str(tmp_path), "--out",
                 str(tmp_path / "out"))
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'none'}: metadata not found"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_missing_output_flag():
    result = run("dataset", "--metadata", "x", "--images", "y")
    assert result.exit_code == 1 and "error: set --out (see kohaku-prep dataset --help)" in result.output


def test_dataset_without_arguments_names_every_missing_option():
    result = run("dataset")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "error: set --metadata, --images, --out (see kohaku-prep dataset --help)"


def test_dataset_end_to_end_prints_overrides_and_stages(sample_root, tmp_path):
    out = tmp_path / "ds"
    result = run("dataset", "--metadata", str(sample_root / "metadata" / "normalized"), "--images",
                 str(sample_root / "images"), "--out", str(out), "selection.pools.0.take=320",
                 "selection.pools.1.take=650", "output.ids_per_folder=1000000")
    assert result.exit_code == 0, result.output
    assert "override selection.pools[0].take = 320 (was 1000000)" in result.output
    assert "image not in the archive" in result.output
    assert "dataset: 1,451 images with captions in 8 folder(s)" in result.output
    again = run("dataset", "--metadata", str(sample_root / "metadata" / "flat"), "--images",
                str(sample_root / "images"), "--out", str(out))
    assert again.exit_code == 1
    assert "already holds a dataset (its preset.toml: another build, perhaps of another preset or seed); " \
           "pass --force" in again.output


def test_presets_lists_shipped_presets():
    result = run("presets")
    assert result.exit_code == 0
    assert result.output == "".join(preset_golden(path, "listing.txt") for path in shipped_presets())


def test_validate_prints_the_resolved_preset():
    result = run("validate", "epsilon", "selection.seed=7")
    assert result.exit_code == 0
    assert "override selection.seed = 7 (was 1337)" in result.output
    toml_text = result.output[result.output.index("# The resolved preset"):]
    assert tomllib.loads(toml_text)["selection"]["seed"] == 7


def test_validate_reports_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[dataset]\nbatch = 4\nresolution = '1024'\n")
    result = run("validate", str(bad))
    assert result.exit_code == 1
    assert "2 problem(s)" in result.output and "did you mean 'dataset.batch_size'?" in result.output


def test_sample_command(tmp_path):
    result = run("sample", str(tmp_path / "s"), "--posts", "200")
    assert result.exit_code == 0 and "sample: 200 posts" in result.output
    assert (tmp_path / "s" / "metadata" / "normalized" / "posttagrelation.parquet").exists()


def test_plan_command(sample_dataset):
    result = run("plan", f"run.dataset={sample_dataset}", "--seconds-per-step", "50")
    assert result.exit_code == 0, result.output
    assert "optimizer steps" in result.output and "LoKr              384,645,360 parameters" in result.output


def test_train_refuses_to_launch_when_preflight_fails(sample_dataset, tmp_path):
    result = run("train", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run'}")
    assert result.exit_code == 1 and "preflight checks failed; nothing was launched" in result.output
    check = run("train", "--check", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run2'}")
    assert check.exit_code == 1 and not (tmp_path / "run2").exists()
