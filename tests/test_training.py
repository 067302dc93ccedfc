"""Preset -> training TOML, launch command and run folder; every option checked against the trainer's facts."""
import hashlib
import json
import tomllib
from pathlib import Path

import pytest
from helpers import preset_golden

from kohaku_prep import interface
from kohaku_prep.errors import PrepError
from kohaku_prep.preset import find_preset, resolve, shipped_presets
from kohaku_prep.train import run, training

RUN = training.RunPaths(Path("/runs/epsilon"))
FIRST = training.PartLaunch(RUN.part(0), 1337, None, sample=True)
SECOND = training.PartLaunch(RUN.part(1), 1338, RUN.part(0).end_state("kohaku-xl-epsilon"), sample=False)


def preset(*overrides):
    return resolve(find_preset("epsilon"), None, list(overrides)).preset


@pytest.mark.parametrize("path", shipped_presets(), ids=lambda p: p.stem)
def test_every_emitted_option_is_one_the_trainer_accepts(path):
    config = training.training_config(resolve(path).preset, RUN, SECOND)
    assert interface.check_training_config(config) == []


@pytest.mark.parametrize("path", shipped_presets(), ids=lambda p: p.stem)
def test_training_toml_matches_golden(path):
    p = resolve(path, None, ["model.pretrained=/models/sd_xl_base_1.0.safetensors"]).preset
    text = training.training_toml(training.training_config(p, RUN, SECOND), path.stem, 2, 51)
    assert text == preset_golden(path, "train.toml")


def test_epsilon_training_toml_is_the_recipe():
    p = preset("model.pretrained=/models/sd_xl_base_1.0.safetensors")
    config = tomllib.loads(training.training_toml(training.training_config(p, RUN, SECOND), "epsilon", 2, 51))
    # a later part: one epoch of its own data, continuing the last part's end state from its own step 0
    assert (config["resume"], config["initial_step"]) == ("/runs/epsilon/parts/001/output/kohaku-xl-epsilon-state", 0)
    assert (config["max_train_epochs"], config["save_state_on_train_end"], config["seed"]) == (1, True, 1338)
    assert "max_train_steps" not in config and "save_every_n_steps" not in config and "sample_prompts" not in config
    assert config["lr_warmup_steps"] == 4000 and isinstance(config["lr_warmup_steps"], int)
    assert config["network_args"] == ["algo=lokr", "factor=8", "conv_dim=10000", "conv_alpha=10000",
                                      "train_norm=True", "preset=/runs/epsilon/lycoris_preset.toml"]
    assert config["optimizer_args"] == ["weight_decay=0.1", "betas=(0.9, 0.95)"]
    assert config["mixed_precision"] == "fp16" and config["full_fp16"] is True


def test_the_first_part_starts_fresh_and_samples_where_the_cadence_says():
    config = training.training_config(preset(), RUN, FIRST)
    assert "resume" not in config and "initial_step" not in config and config["seed"] == 1337
    assert (config["sample_prompts"], config["sample_every_n_epochs"]) == ("/runs/epsilon/prompts.txt", 1)
    assert config["dataset_config"] == "/runs/epsilon/parts/001/dataset.toml"
    assert config["output_dir"] == "/runs/epsilon/parts/001/output"
    assert config["logging_dir"] == "/runs/epsilon/parts/001/logs"


@pytest.mark.parametrize("processes, expected", [(1, 1000), (2, 2000), (4, 4000), (8, 8000)])
def test_warmup_counts_optimizer_steps_whatever_the_processes(processes, expected):
    p = preset(f"launch.num_processes={processes}")
    assert training.training_config(p, RUN, SECOND)["lr_warmup_steps"] == expected


def test_network_args_never_carry_a_false():
    p = preset("network.train_norm=false", "network.dropout=0.0")
    args = training.network_args(p, RUN)
    assert not [a for a in args if a.split("=")[1].lower() == "false"]
    assert not [a for a in args if a.startswith(("train_norm", "dropout", "decompose_both"))]
    assert "dropout=0.1" in training.network_args(preset("network.dropout=0.1"), RUN)


def test_unet_only_and_attention_choices():
    config = training.training_config(preset("network.train_text_encoder=false", "training.attention=sdpa"), RUN, FIRST)
    assert config["network_train_unet_only"] is True and "text_encoder_lr" not in config
    assert config["sdpa"] is True and "xformers" not in config
    assert interface.check_training_config(config) == []


@pytest.mark.parametrize("path", shipped_presets(), ids=lambda p: p.stem)
def test_launch_command_matches_golden(path):
    argv = training.launch_argv(resolve(path).preset, RUN.part(0), Path("/sd"), 0, python="/venv/bin/python")
    assert argv == preset_golden(path, "launch.argv").splitlines()


def test_launch_command_is_fully_explicit():
    """Every accelerate setting given, then the trainer and its config: one process runs without --multi_gpu,
    and on the CPU with --cpu."""
    def launch(*overrides):
        return training.launch_argv(preset(*overrides), RUN.part(0), Path("/sd"), 0, python="/venv/bin/python")

    def expected(processes, mixed_precision, switch):
        return ["/venv/bin/python", "-m", "accelerate.commands.launch", "--num_processes", processes,
                "--num_machines", "1", "--machine_rank", "0", "--main_process_ip", "127.0.0.1",
                "--main_process_port", "29500", "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
                "--num_cpu_threads_per_process", "2", *switch, "/sd/sdxl_train_network.py", "--config_file",
                "/runs/epsilon/parts/001/train.toml"]

    assert launch() == expected("4", "fp16", ["--multi_gpu"])
    assert launch("launch.num_processes=1") == expected("1", "fp16", [])
    cpu = launch("launch.device=cpu", "launch.num_processes=1", "training.mixed_precision=no",
                 "training.full_fp16=false")
    assert cpu == expected("1", "no", ["--cpu"])


def test_command_script_takes_the_rank_from_the_environment():
    p = preset("launch.num_machines=2", "schedule.steps_per_part=0")
    argv = training.launch_argv(p, RUN.part(0), Path("/sd"), 0, python="/venv/bin/python")
    script = training.command_script(argv, 0)
    assert '--machine_rank "${MACHINE_RANK:-0}" \\' in script and script.startswith("#!/usr/bin/env bash")
    assert "    --multi_gpu \\\n" in script


def test_interface_check_catches_what_sd_scripts_would_ignore_or_misread():
    problems = interface.check_training_config({
        "learning_rat": 1e-4, "lr_warmup_steps": 1000.0, "network_args": "algo=lokr", "xformers": False,
        "mixed_precision": "FP16", "max_token_length": 200, "resolution": 1024, "text_encoder_lr": 5e-6})
    assert problems == [  # all but text_encoder_lr: one float is fine
        "'learning_rat' is not an option of sdxl_train_network.py (sd-scripts would ignore it)",
        "'lr_warmup_steps' = 1000.0: the trainer needs int_or_float",
        "'max_token_length' = 200: not one of [None, 150, 225]",
        "'mixed_precision' = 'FP16': not one of ['no', 'fp16', 'bf16']",
        "'network_args' = 'algo=lokr': the trainer needs an array of strings",
        "'resolution' = 1024: the trainer needs str",
        "'xformers' = False: the trainer needs true (leave out when off)"]


def test_interface_check_of_dataset_toml():
    bad = {"general": {"caption_extension": ".txt", "caption_tag_dropout_rate": 0, "image_dir": "/x"},
           "datasets": [{"resolution": 1024.0, "subsets": [{"num_repeats": 1}]}]}
    problems = interface.check_dataset_config(bad)
    assert problems == ["[general]: 'image_dir' is not allowed in a general table",
                        "datasets[0]: 'resolution' = 1024.0 must be int|[int,int]",
                        "datasets[0].subsets[0]: image_dir is required"]


def test_run_folder_holds_everything_the_trainer_reads(sample_dataset, tmp_path):
    resolved = resolve(find_preset("epsilon"), None, [f'run.dataset="{sample_dataset}"', f'run.dir="{tmp_path}/r"',
                                                      "schedule.steps_per_part=2"])
    rp = run.make_plan(resolved.preset)
    paths = run.write_run_folder(resolved, rp, Path("/sd"), ["kohaku-prep", "train"], "/work")
    names = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert names == [".kohaku-prep-files.json", "command.sh", "lycoris_preset.toml", "parts.json", "plan.txt",
                     "preset.toml", "prompts.txt", "run.json", "versions.json"]
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    manifest = hashlib.sha256((sample_dataset / "manifest.parquet").read_bytes()).hexdigest()
    assert sorted(record) == ["bitsandbytes", "dataset_manifest_sha256", "preset_sha256", "sd_scripts_commit"]
    assert (record["dataset_manifest_sha256"], record["sd_scripts_commit"]) == (manifest, run.UNKNOWN_COMMIT)
    assert [row["images"] for row in json.loads(paths.parts_table.read_text())] == [
        len(part.rows) for part in rp.parts.parts]
    argv = run.write_part_folder(resolved.preset, rp, paths, 1, Path("/sd"), "epsilon")
    part = paths.part(1)
    assert sorted(p.name for p in part.root.iterdir()) == ["command.sh", "dataset.toml", "images", "train.toml"]
    config = tomllib.loads(part.train_toml.read_text())
    assert Path(config["dataset_config"]).parent == part.root and config["resume"] == str(paths.part(0).end_state(
        "kohaku-xl-epsilon"))
    assert (tmp_path / "r" / "command.sh").stat().st_mode & 0o111 and part.command.stat().st_mode & 0o111
    assert argv[-1] == str(part.train_toml)
    assert "cd /work\nexec kohaku-prep train\n" in (tmp_path / "r" / "command.sh").read_text()
    assert "override run.dir" in (tmp_path / "r" / "preset.toml").read_text()


def test_the_run_record_hashes_the_presets_values_not_how_they_were_given(sample_dataset, tmp_path):
    as_overrides = preset(f'run.dataset="{sample_dataset}"', "selection.seed=7")
    layer = tmp_path / "mine.toml"
    layer.write_text(f'[run]\ndataset = "{sample_dataset}"\n\n[selection]\nseed = 7\n')
    as_layer = resolve(find_preset("epsilon"), layer).preset
    other = preset(f'run.dataset="{sample_dataset}"', "selection.seed=8")
    preset_hash = [run.run_record(p, Path("/sd"))["preset_sha256"] for p in (as_overrides, as_layer, other)]
    assert preset_hash[0] == preset_hash[1] != preset_hash[2]


def test_run_folder_refuses_what_the_trainer_would_not_take(sample_dataset, tmp_path):
    resolved = resolve(find_preset("epsilon"), None, [f'run.dataset="{sample_dataset}"', f'run.dir="{tmp_path}/r"',
                                                      'optimizer.type="Lion8bit"'])
    rp = run.make_plan(resolved.preset)
    # as a hand-edited resolved preset might say, which the preset's type rules out
    resolved.preset.training.mixed_precision = "FP16"  # type: ignore[assignment]
    paths = training.RunPaths(tmp_path / "r")
    with pytest.raises(PrepError, match="'mixed_precision' = 'FP16'"):
        run.write_part_folder(resolved.preset, rp, paths, 0, Path("/sd"), "epsilon")
    assert not paths.part(0).train_toml.exists()


def test_each_part_trains_its_links_with_the_presets_dataset_values(sample_dataset, tmp_path):
    resolved = resolve(find_preset("epsilon"), None, [f'run.dataset="{sample_dataset}"', f'run.dir="{tmp_path}/r"',
                                                      "dataset.batch_size=1", "dataset.resolution=512",
                                                      "dataset.num_repeats=2", "schedule.steps_per_part=3"])
    rp = run.make_plan(resolved.preset)
    paths = training.RunPaths(tmp_path / "r")
    run.write_part_folder(resolved.preset, rp, paths, 0, Path("/sd"), "epsilon")
    config = tomllib.loads(paths.part(0).dataset_toml.read_text())
    built = tomllib.loads((sample_dataset / "dataset.toml").read_text())
    (dataset,) = config["datasets"]
    assert (dataset["batch_size"], dataset["resolution"]) == (1, 512)
    assert config["general"] == built["general"] | {"num_repeats": 1}  # repeats are links of their own
    links = sorted(f for s in dataset["subsets"] for f in Path(s["image_dir"]).iterdir() if f.suffix != ".txt")
    assert len(links) == len(rp.parts.parts[0].rows) and all(f.is_symlink() for f in links)
    for link in links:
        target = link.resolve()
        assert target.is_relative_to(sample_dataset.resolve()) and link.name.startswith(target.stem + "-r")
        assert link.with_suffix(".txt").read_text() == target.with_suffix(".txt").read_text()
