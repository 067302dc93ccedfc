"""Mistakes a user makes on purpose or by accident: each is one `error:` line and a non-zero exit, no
traceback, and every file the user had stays as it was. `--debug` shows the traceback."""
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import needs_clip_bpe

from kohaku_prep.cli import main
from kohaku_prep.train import run as run_module


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(result, code, fragment):
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)  # handled, not raised
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.output
    assert result.output.rstrip().splitlines()[-1] == errors[0]  # the last word is the problem


@pytest.fixture
def mistakes(tmp_path, sample_dataset):
    """A folder with the things a user gets wrong: a plain file, a folder, a non-UTF-8 'preset', a broken
    manifest."""
    (tmp_path / "a-file").write_bytes(b"mine")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "latin1.toml").write_bytes(b"# \xe9t\xe9\n")
    broken = tmp_path / "broken-dataset"
    broken.mkdir()
    (broken / "manifest.parquet").write_bytes(b"PAR1 not really")
    narrow = tmp_path / "narrow-dataset"
    narrow.mkdir()
    pq.write_table(pa.table({"id": [1]}), narrow / "manifest.parquet")
    return tmp_path


DS = "{dataset}"
CASES = [
    # (arguments, exit code, fragment of the error line)
    (["dataset", "--metadata", "{t}/x", "--images", "{t}", "--out", "{t}/a-file"], 1, "is a file, not a folder"),
    (["dataset"], 1, "set --metadata, --images, --out"),
    (["dataset", "--metadata", "{t}/a-file", "--images", "{t}/a-file", "--out", "{t}/o"], 1,
     "image source not found"),
    (["dataset", "--metadata", "{t}/a-file", "--images", "{t}/a-folder", "--out", "{t}/o"], 1,
     "not a readable Parquet file"),
    (["sample", "{t}/s", "--posts", "7351"], 2, "7351 is not in the range 1<=x<=7350"),
    (["sample", "{t}/s", "--posts", "0"], 2, "0 is not in the range"),
    (["sample", "{t}/s", "--posts", "many"], 2, "'many' is not a valid integer"),
    (["sample", "{t}/a-file"], 2, "is a file"),
    (["plan"], 1, "run.dataset: not a built dataset"),
    (["plan", "--dataset", "{t}/a-folder"], 1, "not a built dataset"),
    (["plan", "--dataset", "{t}/broken-dataset"], 1, "manifest.parquet: not a readable manifest"),
    (["plan", "--dataset", "{t}/narrow-dataset"], 1, "manifest.parquet: not a readable manifest"),
    (["plan", "--dataset", DS, "--seconds-per-step", "abc"], 2, "'--seconds-per-step'"),
    (["plan", "--dataset", DS, "--seconds-per-step", "-3"], 2, "'--seconds-per-step'"),
    (["plan", "--datset", DS], 2, "No such option '--datset'"),
    (["plann"], 2, "No such command 'plann'"),
    (["plan", "--preset", "nope", "--dataset", DS], 1, "no preset file 'nope' and no shipped preset"),
    (["plan", "--preset", "{t}/a-folder", "--dataset", DS], 1, "a folder, not a preset file"),
    (["plan", "--preset", "{t}/latin1.toml", "--dataset", DS], 1, "not a TOML file (not UTF-8 text)"),
    (["plan", "--config", "{t}/none.toml", "--dataset", DS], 1, "no such preset file"),
    (["plan", "--dataset", DS, "selection.seed"], 1, "expected key=value"),
    (["plan", "--dataset", DS, "=3"], 1, "expected key=value"),
    (["plan", "--dataset", DS, "selection.pools.9.take=1"], 1, "no element 9"),
    (["plan", "--dataset", DS, "dataset.resolution.x=1"], 1, "is not a table"),
    (["plan", "--dataset", DS, "dataset=3"], 1, "'dataset' must be a table"),
    (["plan", "--dataset", DS, "schedule.epochs=two"], 1, "'schedule.epochs' must be an integer"),
    (["plan", "--dataset", DS, "optimizer.type=AdamW9bit"], 1, "did you mean 'AdamW8bit'?"),
    (["plan", "--dataset", DS, "optimizer.unet_lr=-1e-5"], 1, "optimizer.unet_lr = -1e-05: must be > 0"),
    (["plan", "--dataset", DS, "optimizer.unet_lr=nan"], 1, "optimizer.unet_lr = nan"),
    (["plan", "--dataset", DS, "network.factor=0"], 1, "network.factor = 0: must be >= 1 or -1"),
    (["plan", "--dataset", DS, "network.factor=-3"], 1, "network.factor = -3"),
    (["plan", "--dataset", DS, "network.dim=0"], 1, "network.dim = 0: must be >= 1"),
    (["plan", "--dataset", DS, "schedule.lr_scheduler=cosin"], 1, "did you mean 'cosine'?"),
    (["plan", "--dataset", DS, "schedule.lr_scheduler=constant"], 1, "takes no warmup"),
    (["plan", "--dataset", DS, "samples.sampler=eular_a"], 1, "did you mean 'euler_a'?"),
    (["plan", "--dataset", DS, "network.preset=mine.toml"], 1, "network.preset = 'mine.toml': no such file"),
    (["plan", "--dataset", DS, "samples.prompts=lycoris"], 1, "samples.prompts = 'lycoris': no such file"),
    (["plan", "--dataset", DS, "schedule.seed=-1"], 1, "schedule.seed = -1"),
    (["plan", "--dataset", DS, "launch.main_process_port=70000"], 1, "launch.main_process_port = 70000"),
    (["plan", "--dataset", DS, "optimizer.betas=[0.9, 1.5]"], 1, "optimizer.betas[1] = 1.5"),
    (["plan", "--dataset", DS, "dataset.bucket_reso_steps=0"], 1, "needs a positive multiple of 32"),
    (["plan", "--dataset", DS, "saving.output_name=../x"], 1, "a file name, not a path"),
    (["plan", "--dataset", DS, "training.max_token_length=100"], 1, "must be 75 or 150 or 225, got 100"),
    (["validate", "nope"], 1, "no preset file 'nope'"),
    (["validate", "--preset", "epsilon", "epsilon"], 1, "two presets given"),
    (["train", "--dataset", DS, "--run-dir", "{t}/a-file", "--sd-scripts", "/sd"], 1, "is a file, not a folder"),
    (["train", "--dataset", DS, "--run-dir", "{t}/r", "--resume"], 1, "no run to continue"),
    (["train", "--dataset", DS, "--run-dir", "{t}/r", "--resume", "latest"], 1,
     "override 'latest': expected key=value"),
    (["train", "--dataset", DS, "--force-resume"], 1, "set run.dir"),
    (["train", "--dataset", DS], 1, "set run.dir (the run folder: --run-dir DIR or run.dir=DIR)"),
    (["tokenizers", "{t}/a-file"], 2, "is a file"),
    (["tokenizers", "{t}/tok", "--bpe", "{t}/a-file"], 1, "not a gzipped CLIP BPE file"),
]


@pytest.mark.parametrize("args, code, fragment", CASES, ids=[" ".join(c[0])[:70] for c in CASES])
def test_a_mistake_is_one_line_and_a_nonzero_exit(mistakes, sample_dataset, args, code, fragment):
    before = snapshot(mistakes)
    result = run(*[a.format(t=mistakes, dataset=sample_dataset) for a in args])
    assert_one_line_error(result, code, fragment)
    assert snapshot(mistakes) == before


def test_a_machine_rank_that_is_not_one_is_refused(sample_dataset, tmp_path):
    result = CliRunner(env={"MACHINE_RANK": "abc"}).invoke(main, [
        "train", "--dry-run", "--dataset", str(sample_dataset), "--run-dir", str(tmp_path / "r")])
    assert_one_line_error(result, 1, "MACHINE_RANK=abc: must be a machine number from 0 to 0")


def test_every_value_problem_is_reported_at_once(sample_dataset):
    result = run("validate", "optimizer.type=AdamW9bit", "optimizer.unet_lr=-1", "network.factor=0",
                 "schedule.lr_scheduler=cosin", "samples.sampler=eular_a")
    assert result.exit_code == 1
    first, *problems = result.output.splitlines()
    assert first == "error: 5 problem(s) in the preset:"
    assert [line.split()[0] for line in problems] == ["optimizer.type", "schedule.lr_scheduler", "samples.sampler",
                                                      "optimizer.unet_lr", "network.factor"]
    assert [line.split(";")[0] for line in problems[1:]] == [
        "  schedule.lr_scheduler = 'cosin': not a scheduler this run can use",
        "  samples.sampler = 'eular_a': not a sampler of the trainer",
        "  optimizer.unet_lr = -1.0: must be > 0",
        "  network.factor = 0: must be >= 1 or -1"]
    assert "did you mean 'AdamW8bit'?" in problems[0]


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(sample_dataset, monkeypatch):
    def broken(p):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(run_module, "make_plan", broken)
    result = run("plan", "--dataset", sample_dataset)
    assert_one_line_error(result, 3, "unexpected ZeroDivisionError: division by zero; this is a bug")
    assert "--debug" in result.output
    debug = run("--debug", "plan", "--dataset", sample_dataset)
    assert isinstance(debug.exception, ZeroDivisionError)
    monkeypatch.setenv("KOHAKU_PREP_DEBUG", "1")
    assert isinstance(run("plan", "--dataset", sample_dataset).exception, ZeroDivisionError)


def test_debug_prints_the_traceback_of_a_user_error_from_the_installed_command(tmp_path):
    command = [sys.executable, "-m", "kohaku_prep", "validate", "nope"]
    plain = subprocess.run(command, capture_output=True, text=True)
    assert plain.returncode == 1 and plain.stderr.splitlines() == [
        "error: no preset file 'nope' and no shipped preset of that name (shipped: epsilon)"]
    debug = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "KOHAKU_PREP_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "PrepError" in debug.stderr


def test_ctrl_c_says_the_same_command_resumes(sample_root, tmp_path, monkeypatch):
    from kohaku_prep.dataset import build

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(build, "write_captions", interrupt)
    result = run("dataset", "--metadata", sample_root / "metadata" / "flat", "--images", sample_root / "images",
                 "--out", tmp_path / "out", "selection.pools.0.take=10")
    assert result.exit_code == 130
    assert result.output.splitlines()[-1] == "interrupted; run the same command again to resume the build where " \
                                             "it stopped"
    assert (tmp_path / "out.partial" / ".build-key").is_file()


# ---------------------------------------------------------------- files in the way

def test_run_folder_never_overwrites_a_file_it_did_not_write(sample_dataset, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "command.sh").write_bytes(b"# my own script\n")
    (run_dir / "notes.txt").write_bytes(b"keep")
    before = snapshot(run_dir)
    result = run("train", "--dry-run", "--dataset", sample_dataset, "--run-dir", run_dir, "--sd-scripts", "/sd")
    assert_one_line_error(result, 1, f"{run_dir / 'command.sh'}: not written by kohaku-prep")
    assert snapshot(run_dir) == before  # nothing written: every target is checked first


def test_run_folder_is_rewritten_but_a_file_edited_since_is_not(sample_dataset, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "--dry-run", "--dataset", sample_dataset, "--run-dir", run_dir, "--sd-scripts", "/sd"]
    run(*args)
    (run_dir / "notes.txt").write_bytes(b"keep")  # a file of the user's beside the tool's: untouched
    again = run(*args, "schedule.epochs=2", "--force-resume")  # another preset: continued only when forced
    assert "dry run:" in again.output and "error:" not in again.output
    assert "epochs = 2" in (run_dir / "preset.toml").read_text()
    (run_dir / "plan.txt").write_bytes(b"edited by hand")
    before = snapshot(run_dir)
    refused = run(*args, "schedule.epochs=2")
    assert_one_line_error(refused, 1, f"{run_dir / 'plan.txt'}: not written by kohaku-prep, or changed since")
    assert snapshot(run_dir) == before


def test_sample_replaces_its_own_files_only(tmp_path):
    folder = tmp_path / "s"
    assert run("sample", folder, "--posts", "300").exit_code == 0
    (folder / "mine.txt").write_bytes(b"keep")
    assert run("sample", folder, "--posts", "200").exit_code == 0
    assert (folder / "mine.txt").read_bytes() == b"keep"
    shard = sorted((folder / "images" / "original").glob("*.tar"))[0]
    shard.write_bytes(b"my own shard")
    before = snapshot(folder)
    result = run("sample", folder, "--posts", "200")
    assert_one_line_error(result, 1, f"{shard}: not written by kohaku-prep")
    assert snapshot(folder) == before


@needs_clip_bpe
def test_tokenizer_cache_never_overwrites_a_file_it_did_not_write(tmp_path):
    vocab = tmp_path / "tok" / "openai_clip-vit-large-patch14" / "vocab.json"
    vocab.parent.mkdir(parents=True)
    vocab.write_bytes(b"{}")
    result = run("tokenizers", tmp_path / "tok")
    assert_one_line_error(result, 1, f"{vocab}: not written by kohaku-prep")
    assert vocab.read_bytes() == b"{}"


def test_no_lycoris_preset_plans_and_writes_a_run_without_one(sample_dataset, tmp_path):
    planned = run("plan", "--dataset", sample_dataset, 'network.preset=""')
    assert planned.exit_code == 0, planned.output
    assert "no LyCORIS preset (LyCORIS's default modules)" in planned.output
    result = run("train", "--dry-run", "--dataset", sample_dataset, "--run-dir", tmp_path / "run", "--sd-scripts",
                 "/sd", 'network.preset=""')
    assert "dry run:" in result.output and "error:" not in result.output
    assert not (tmp_path / "run" / "lycoris_preset.toml").exists()
    assert "preset=" not in (tmp_path / "run" / "parts" / "001" / "train.toml").read_text()


def test_a_sample_written_before_the_record_existed_is_rewritten(tmp_path):
    folder = tmp_path / "s"
    assert run("sample", folder, "--posts", "200").exit_code == 0
    (folder / ".kohaku-prep-files.json").unlink()  # as an older version left it: same bytes, no record
    again = run("sample", folder, "--posts", "200")
    assert again.exit_code == 0, again.output
