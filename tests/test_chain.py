"""A run's parts launched one after another: done only when the launch exits 0 with its end state
complete; a failure stops the run naming the part, and the same command continues from there."""
import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from kohaku_prep.cli import main
from kohaku_prep.errors import PrepError, Stopped
from kohaku_prep.preset import find_preset, resolve
from kohaku_prep.train import chain, preflight, resume
from kohaku_prep.train import run as run_module
from kohaku_prep.train.training import RunPaths

NAME = "kohaku-xl-epsilon"
SMALL = ["schedule.gradient_accumulation_steps=2", "launch.num_processes=1", "dataset.batch_size=4",
         "schedule.steps_per_part=70", "saving.every_n_steps=100", "saving.keep_states=2", 'samples.prompts=""',
         "run.retries=0"]


class FakeTrainer:
    """Does what sd-scripts does to the run folder: reads the part's TOML files, checks its links, saves
    the end state and the LoKr file. `fail` maps a part number to the exit code of its next launch."""

    def __init__(self, fail=None, interrupt=None, no_state=()):
        self.fail, self.interrupt, self.no_state = dict(fail or {}), interrupt, set(no_state)
        self.launched: list[dict] = []

    def __call__(self, argv, log):
        config = tomllib.loads(Path(argv[argv.index("--config_file") + 1]).read_text())
        part = int(Path(config["output_dir"]).parent.name)
        self.launched.append(config)
        log.write_text(f"launch of part {part}\n")
        if part == self.interrupt:
            raise KeyboardInterrupt
        if part in self.fail:
            return self.fail.pop(part)
        dataset = tomllib.loads(Path(config["dataset_config"]).read_text())
        images = [f for s in dataset["datasets"][0]["subsets"] for f in Path(s["image_dir"]).iterdir()
                  if f.suffix != ".txt"]
        assert all(f.is_symlink() and f.resolve().is_file() and f.with_suffix(".txt").resolve().is_file()
                   for f in images)
        output = Path(config["output_dir"])
        state = output / f"{NAME}-state"
        state.mkdir(parents=True, exist_ok=True)
        (state / "train_state.json").write_text(json.dumps({"current_step": part}))
        if part not in self.no_state:
            (state / resume.COMPLETE_MARKER).write_bytes(b"")
        (output / f"{NAME}.safetensors").write_text(f"lokr after part {part} of {len(images)} images")
        if "sample_prompts" in config:  # as sd-scripts names them: the launch's own epoch and step
            (output / "sample").mkdir(exist_ok=True)
            (output / "sample" / f"{NAME}_e000001_00_20261206.png").write_bytes(b"png")
        return 0


def resolved(dataset, run_dir, *extra):
    return resolve(find_preset("epsilon"), None, [f"run.dataset={dataset}", f"run.dir={run_dir}", *SMALL, *extra])


def start(dataset, run_dir, *extra):
    r = resolved(dataset, run_dir, *extra)
    rp = run_module.make_plan(r.preset)
    paths = run_module.write_run_folder(r, rp, Path("/sd"), ["kohaku-prep", "train"], "/")
    return r.preset, rp, paths


def go(p, rp, paths, trainer, echoed=None):
    chain.run_parts(p, rp, paths, Path("/sd"), "epsilon", (echoed if echoed is not None else []).append, trainer)


def test_a_whole_run_chains_its_parts_and_keeps_what_the_policy_says(sample_dataset, tmp_path):
    p, rp, paths = start(sample_dataset, tmp_path / "run")
    count = len(rp.parts.parts)
    assert count == 3  # the sample: ~370 batches of 4, ~185 optimizer steps, at most 70 a part
    trainer = FakeTrainer()
    go(p, rp, paths, trainer)
    assert len(trainer.launched) == count
    first, *rest = trainer.launched
    assert "resume" not in first and "initial_step" not in first and first["seed"] == 1337
    for i, config in enumerate(rest, start=1):
        assert config["resume"] == str(paths.part(i - 1).end_state(NAME)) and config["initial_step"] == 0
        assert config["seed"] == 1337 + i and config["max_train_epochs"] == 1
        assert config["lr_warmup_steps"] == first["lr_warmup_steps"]
    ends = [part.end_step for part in rp.parts.parts]
    kept = sorted(f.name for f in paths.output_dir.iterdir())
    expected = {f"{NAME}-step{e:08d}.safetensors" for e in ends if e in run_module.parts_module.cadence_ends(
        rp.parts.parts, 100)} | {f"{NAME}-step{ends[-1]:08d}.safetensors", f"{NAME}.safetensors"}
    assert kept == sorted(expected)
    assert paths.final_lokr(NAME).read_text().startswith(f"lokr after part {count:03d}".replace(f"{count:03d}",
                                                                                               str(count)))
    states = [i for i in range(count) if paths.part(i).end_state(NAME).is_dir()]
    assert states == list(range(count))[-2:]  # saving.keep_states = 2
    assert not any(paths.part(i).images.exists() for i in range(count))  # links of finished parts go
    assert all(json.loads(paths.part(i).done.read_text())["end_step"] == ends[i] for i in range(count))


def test_sample_images_are_drawn_at_the_cadence_and_named_by_cumulative_step(sample_dataset, tmp_path):
    p, rp, paths = start(sample_dataset, tmp_path / "run", "samples.prompts=prompts/epsilon.txt",
                         "samples.every_n_steps=100")
    trainer = FakeTrainer()
    go(p, rp, paths, trainer)
    sampled = [part.end_step for part, config in zip(rp.parts.parts, trainer.launched, strict=True)
               if config.get("sample_every_n_epochs") == 1]
    assert sampled == run_module.parts_module.cadence_ends(rp.parts.parts, 100) and sampled
    assert sorted(f.name for f in paths.samples_dir.iterdir()) == [
        f"step{step:08d}_{NAME}_e000001_00_20261206.png" for step in sampled]


def test_a_failed_part_stops_the_run_and_the_same_command_continues_there(sample_dataset, tmp_path):
    p, rp, paths = start(sample_dataset, tmp_path / "run")
    trainer = FakeTrainer(fail={2: 1})
    with pytest.raises(PrepError, match=r"part 2 of 3 failed: the launch exited with 1; see .*parts/002/train.log\. "
                                        r"Fix the cause and run the same command: it continues from part 2"):
        go(p, rp, paths, trainer)
    assert paths.part(0).done.is_file() and not paths.part(1).done.is_file()
    again = FakeTrainer()
    go(p, rp, paths, again)
    assert [Path(c["output_dir"]).parent.name for c in again.launched] == ["002", "003"]
    assert again.launched[0]["resume"] == str(paths.part(0).end_state(NAME))


def test_retries_launch_a_crashed_part_again(sample_dataset, tmp_path):
    p, rp, paths = start(sample_dataset, tmp_path / "run", "run.retries=1")
    trainer = FakeTrainer(fail={1: -9})
    echoed: list[str] = []
    go(p, rp, paths, trainer, echoed)
    assert len(trainer.launched) == 4
    crashed = f"part 1 of 3: the launch exited with -9 (log {paths.part(0).log}); launching it again (1 retry left)"
    first_part = [e for e in echoed if e.startswith("part 1 of 3")]
    assert first_part[1:] == [crashed, "part 1 of 3 done: optimizer step 61 of 183"]
    assert json.loads(paths.part(0).done.read_text())["attempts"] == 2


def test_an_exit_0_without_a_complete_end_state_is_not_done(sample_dataset, tmp_path):
    p, rp, paths = start(sample_dataset, tmp_path / "run")
    with pytest.raises(PrepError, match="part 1 of 3 failed: no complete end state"):
        go(p, rp, paths, FakeTrainer(no_state={1}))


def test_ctrl_c_stops_and_says_the_same_command_continues(sample_dataset, tmp_path):
    p, rp, paths = start(sample_dataset, tmp_path / "run")
    with pytest.raises(Stopped, match="stopped during part 2 of 3; the same command continues from part 2"):
        go(p, rp, paths, FakeTrainer(interrupt=2))
    assert Stopped("").exit_code == 130


def test_a_crash_between_done_and_publishing_is_mended_without_a_launch(sample_dataset, tmp_path):
    p, rp, paths = start(sample_dataset, tmp_path / "run")
    go(p, rp, paths, FakeTrainer())
    last = rp.parts.parts[-1]
    lokr = paths.lokr_at(NAME, last.end_step)
    lokr.rename(paths.part(last.index).lokr(NAME))  # as if the tool died right after done.json
    paths.final_lokr(NAME).unlink()
    trainer = FakeTrainer()
    go(p, rp, paths, trainer)
    assert trainer.launched == [] and lokr.is_file() and paths.final_lokr(NAME).is_file()


def test_run_folders_whose_parts_or_output_are_someone_elses_are_refused(tmp_path):
    assert run_module.check_run_folder(tmp_path / "new") is False
    (tmp_path / "notes.txt").write_text("mine")
    assert run_module.check_run_folder(tmp_path) is False  # the user's notes may stay beside a run
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "my.safetensors").write_text("mine")
    with pytest.raises(PrepError, match="run.dir holds a output/ of its own but no run of kohaku-prep"):
        run_module.check_run_folder(tmp_path)
    with pytest.raises(PrepError, match="is a file, not a folder"):
        run_module.check_run_folder(tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_scheduler_that_cannot_be_chained_is_refused(sample_dataset, tmp_path):
    with pytest.raises(PrepError, match="cosine cannot run in 3 parts"):
        run_module.make_plan(resolved(sample_dataset, tmp_path, "schedule.lr_scheduler=cosine").preset)
    one = run_module.make_plan(resolved(sample_dataset, tmp_path, "schedule.lr_scheduler=cosine",
                                        "schedule.steps_per_part=0").preset)
    assert len(one.parts.parts) == 1


def cli(*args):
    return CliRunner().invoke(main, list(args))


def test_train_runs_the_parts_and_status_follows_them(sample_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "run_preflight", lambda p, rp, sd: [preflight.Check("all", True, "stubbed")])
    trainer = FakeTrainer(fail={2: 1})
    monkeypatch.setattr(chain, "launch", trainer)
    args = ["train", "--sd-scripts", "/sd", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run'}", *SMALL]
    failed = cli(*args)
    assert failed.exit_code == 1 and "error: part 2 of 3 failed" in failed.output
    status = cli("status", str(tmp_path / "run"))
    assert status.exit_code == 0, status.output
    assert "part       2 of 3, not running: the same train command continues it" in status.output
    continued = cli(*args)
    assert continued.exit_code == 0, continued.output
    assert "continuing the run at part 2 of 3" in continued.output and "run complete" in continued.output
    assert "part       all 3 done" in cli("status", str(tmp_path / "run")).output
    script = (tmp_path / "run" / "command.sh").read_text()
    assert "-m kohaku_prep train --preset epsilon --sd-scripts /sd" in script
    part_script = (tmp_path / "run" / "parts" / "003" / "command.sh").read_text()
    assert f"--config_file {tmp_path / 'run' / 'parts' / '003' / 'train.toml'}" in part_script


def test_train_resume_needs_a_run_and_refuses_a_changed_one_unless_forced(sample_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "run_preflight", lambda p, rp, sd: [preflight.Check("all", True, "stubbed")])
    monkeypatch.setattr(chain, "launch", FakeTrainer(fail={1: 1}))
    args = ["train", "--sd-scripts", "/sd", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run'}", *SMALL]
    assert "no run to continue" in cli(*args[:1], "--resume", *args[1:]).output
    assert cli(*args).exit_code == 1  # part 1 failed: the run folder exists now
    record = (tmp_path / "run" / "run.json").read_text()
    changed = cli(*args, "optimizer.unet_lr=1e-5")
    assert changed.exit_code == 1 and "cannot continue the run: preset_sha256 changed" in changed.output
    assert (tmp_path / "run" / "run.json").read_text() == record
    forced = cli(*args, "optimizer.unet_lr=1e-5", "--force-resume")
    assert forced.exit_code == 0 and "warning: continuing anyway: preset_sha256 changed" in forced.output
    assert (tmp_path / "run" / "run.json").read_text() != record


def test_dry_run_writes_the_next_part_and_launches_nothing(sample_dataset, tmp_path):
    result = cli("train", "--dry-run", f"run.dataset={sample_dataset}", f"run.dir={tmp_path / 'run'}")
    assert result.exit_code == 1, result.output
    assert "FAIL base model: model.pretrained is not set" in result.output
    assert "preflight checks failed; nothing was launched" in result.output
    command = [line for line in result.output.splitlines() if "accelerate.commands.launch" in line]
    assert command and command[0].endswith(f"--config_file {tmp_path / 'run' / 'parts' / '001' / 'train.toml'}")
    paths = RunPaths(tmp_path / "run")
    assert paths.part(0).command.is_file() and not paths.part(0).done.exists()
