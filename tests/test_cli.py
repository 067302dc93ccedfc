"""The command line: one-line errors with a non-zero exit, and the commands a user types."""
import json
import shutil
import tomllib

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from helpers import make_state
from kohaku_prep import preflight
from kohaku_prep import run as run_module
from kohaku_prep.cli import main


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
    assert result.exit_code == 0 and result.output.startswith("epsilon ")


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


def test_train_dry_run_writes_the_run_folder_and_prints_the_command(sample_dataset, tmp_path):
    result = run("train", "--dry-run", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run'}")
    assert result.exit_code == 1, result.output  # checks failed: said, and the exit code says it too
    assert "FAIL base model: model.pretrained is not set" in result.output
    failed = result.output.count("\nFAIL ")
    assert f"dry run: {failed} of 11 preflight checks failed; nothing was launched" in result.output
    command = [line for line in result.output.splitlines() if "accelerate.commands.launch" in line]
    assert command and command[0].endswith(f"--config_file {tmp_path / 'run' / 'train.toml'}")
    assert (tmp_path / "run" / "command.sh").exists()


def test_train_refuses_to_launch_when_preflight_fails(sample_dataset, tmp_path):
    result = run("train", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run'}")
    assert result.exit_code == 1 and "preflight checks failed; nothing was launched" in result.output
    check = run("train", "--check", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run2'}")
    assert check.exit_code == 1 and not (tmp_path / "run2").exists()


def test_train_resume_of_epsilon_is_refused_with_the_reason(sample_dataset, tmp_path):
    state = tmp_path / "run" / "output" / "kohaku-xl-epsilon-step00000002-state"
    state.mkdir(parents=True)
    (state / "train_state.json").write_text('{"current_step": 2}')
    (state / "random_states_0.pkl").write_bytes(b"")
    result = run("train", "--dry-run", "--resume", "latest", f"run.dataset={sample_dataset}",
                 f"run.dir={tmp_path / 'run'}")
    assert result.exit_code == 1 and "cannot resume with gradient accumulation 16" in result.output


def test_train_hands_the_process_to_accelerate(sample_dataset, tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(run_module, "run_preflight", lambda p, rp, sd: [preflight.Check("all", True, "stubbed")])
    handed = []
    monkeypatch.setattr(os, "execvpe", lambda file, argv, env: handed.append((file, argv)))
    result = run("train", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run'}", "--sd-scripts", "/sd")
    assert result.exit_code == 0, result.output
    ((file, argv),) = handed
    assert file == argv[0] and argv[1:3] == ["-m", "accelerate.commands.launch"]
    assert argv[-3:] == ["/sd/sdxl_train_network.py", "--config_file", str(tmp_path / "run" / "train.toml")]
    script = (tmp_path / "run" / "command.sh").read_text()
    assert "/sd/sdxl_train_network.py" in script and str(tmp_path / "run" / "train.toml") in script


RESUMABLE = ["schedule.gradient_accumulation_steps=1", "launch.num_processes=2"]  # where sd-scripts resumes right
STATE = "kohaku-xl-epsilon-step00000002-state"


@pytest.fixture
def passing_preflight(monkeypatch):
    """The run's preflight passes (no trainer here), so that a dry run exits 0."""
    monkeypatch.setattr(run_module, "run_preflight", lambda p, rp, sd: [preflight.Check("all", True, "stubbed")])


def start_run(dataset, run_dir):
    """The arguments of a run whose folder `train` wrote, with one complete saved state at step 2."""
    args = ["--sd-scripts", "/sd", f"run.dataset={dataset}", f"run.dir={run_dir}", *RESUMABLE]
    started = run("train", "--dry-run", *args)
    assert started.exit_code == 0, started.output
    make_state(run_dir / "output", STATE, 2)
    return args


def run_folder_files(run_dir):
    return {f.name: f.read_bytes() for f in run_dir.iterdir() if f.is_file()}


def test_train_resume_latest_continues_an_unchanged_run_from_its_last_complete_state(sample_dataset, tmp_path,
                                                                                      passing_preflight):
    args = start_run(sample_dataset, tmp_path / "run")
    output = tmp_path / "run" / "output"
    make_state(output, "kohaku-xl-epsilon-step00000004-state", 4, complete=False)  # cut off mid-save
    cut = make_state(output, "kohaku-xl-epsilon-step00000006-state", 6)
    (cut / "train_state.json").write_text('{"current_epoch": 0, "curr')  # cut off mid-write
    recorded = (tmp_path / "run" / "run.json").read_text()
    result = run("train", "--dry-run", "--resume", "latest", *args)
    assert result.exit_code == 0, result.output
    assert f"resuming from {output / STATE} at optimizer step 2" in result.output and "warning" not in result.output
    assert result.stdout.rstrip().endswith(f"--resume {output / STATE} --skip_until_initial_step")
    assert (tmp_path / "run" / "run.json").read_text() == recorded  # the same inputs, the same bytes


def change_preset(dataset, monkeypatch):
    return ["optimizer.unet_lr=1e-5"]


def change_manifest(dataset, monkeypatch):
    manifest = dataset / "manifest.parquet"
    pq.write_table(pq.read_table(manifest).slice(1), manifest)
    return []


def change_sd_scripts_commit(dataset, monkeypatch):
    monkeypatch.setattr(preflight, "sd_scripts_commit", lambda checkout: "b" * 40)
    return []


def change_bitsandbytes(dataset, monkeypatch):
    monkeypatch.setattr(run_module, "installed_version", lambda dist: "0.45.0")
    return []


@pytest.mark.parametrize("key, change", [
    ("preset_sha256", change_preset), ("dataset_manifest_sha256", change_manifest),
    ("sd_scripts_commit", change_sd_scripts_commit), ("bitsandbytes", change_bitsandbytes),
], ids=["preset", "manifest", "sd-scripts commit", "bitsandbytes"])
def test_train_resume_of_a_changed_run_is_refused_unless_forced(sample_dataset, tmp_path, monkeypatch, key, change,
                                                                passing_preflight):
    dataset = shutil.copytree(sample_dataset, tmp_path / "dataset")  # the manifest case rewrites it
    monkeypatch.setattr(preflight, "sd_scripts_commit", lambda checkout: "a" * 40)
    monkeypatch.setattr(run_module, "installed_version", lambda dist: "0.43.1")
    args = start_run(dataset, tmp_path / "run")
    before = run_folder_files(tmp_path / "run")
    old = json.loads(before["run.json"])[key]
    args += change(dataset, monkeypatch)
    refused = run("train", "--dry-run", "--resume", "latest", *args)
    assert refused.exit_code == 1
    (error,) = [line for line in refused.output.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: cannot resume: {key} changed: {old} -> ") and error.count(" changed: ") == 1
    assert run_folder_files(tmp_path / "run") == before  # refused before anything was rewritten
    forced = run("train", "--dry-run", "--resume", "latest", "--force-resume", *args)
    assert forced.exit_code == 0, forced.output
    new = json.loads((tmp_path / "run" / "run.json").read_text())[key]
    assert new != old and f"warning: resuming anyway: {key} changed: {old} -> {new}" in forced.output
    assert f"--resume {tmp_path / 'run' / 'output' / STATE}" in forced.output


def test_train_resume_without_a_record_is_refused_unless_forced(sample_dataset, tmp_path, passing_preflight):
    args = start_run(sample_dataset, tmp_path / "run")
    (tmp_path / "run" / "run.json").unlink()  # a run folder written before run.json existed
    refused = run("train", "--dry-run", "--resume", "latest", *args)
    assert refused.exit_code == 1
    assert "cannot resume: no readable run.json in the run folder records what the run" in refused.output
    forced = run("train", "--dry-run", "--resume", "latest", "--force-resume", *args)
    assert forced.exit_code == 0 and "warning: resuming anyway: no readable run.json" in forced.output
    assert (tmp_path / "run" / "run.json").is_file()


def test_force_resume_goes_with_resume(sample_dataset, tmp_path):
    result = run("train", "--dry-run", "--force-resume", f"run.dataset={sample_dataset}", f"run.dir={tmp_path}")
    assert result.exit_code == 1 and "error: --force-resume goes with --resume" in result.output
