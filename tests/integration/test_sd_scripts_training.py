"""The pinned trainer's own parser reads every part folder the shipped presets produce as meant, and its
own dataset code loads each part as exactly that part's images and captions."""
import json
import math
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kohaku_prep.preset import find_preset, resolve, shipped_presets
from kohaku_prep.train import run, training


@pytest.mark.parametrize("preset", shipped_presets(), ids=lambda p: p.stem)
def test_trainer_parses_a_resuming_part(preset, sample_dataset, sd_scripts, trainer_python, tmp_path):
    resolved = resolve(preset, None, [f'run.dataset="{sample_dataset}"', f'run.dir="{tmp_path / "run"}"',
                                      f'model.pretrained="{tmp_path / "base.safetensors"}"',
                                      "schedule.steps_per_part=2"])
    p = resolved.preset
    rp = run.make_plan(p)
    paths = run.write_run_folder(resolved, rp, sd_scripts, ["kohaku-prep", "train"], str(tmp_path))
    argv = run.write_part_folder(p, rp, paths, 1, sd_scripts, preset.stem)
    result = subprocess.run([trainer_python, str(Path(__file__).parent / "sd_scripts_parse.py"), str(sd_scripts),
                             json.dumps(argv)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout)
    trainer, launch = parsed["trainer"], parsed["launch"]
    state = paths.part(0).end_state(p.saving.output_name)
    config = training.training_config(p, paths, training.PartLaunch(paths.part(1), p.schedule.seed + 1, state,
                                                                    run.samples_at_end(rp.parts.parts[1],
                                                                                       p.samples.every_n_steps)))
    for key, value in config.items():
        assert trainer[key] == value, key
    # what the recipe means, as the trainer now holds it
    assert trainer["lr_warmup_steps"] == p.schedule.warmup_optimizer_steps * p.launch.num_processes
    assert isinstance(trainer["lr_warmup_steps"], int)
    assert trainer["mixed_precision"] == p.training.mixed_precision == launch["mixed_precision"]
    assert trainer["seed"] == p.schedule.seed + 1 and trainer["resume"] == str(state)
    assert trainer["initial_step"] == 0 and trainer["skip_until_initial_step"] is False
    assert trainer["max_train_epochs"] == 1 and trainer["max_train_steps"] == 1600  # argparse's default, overridden
    assert trainer["save_state_on_train_end"] is True
    assert trainer["caption_extension"] == ".caption"  # argparse's default: only the dataset TOML sets .txt
    assert launch["num_processes"] == p.launch.num_processes and launch["num_machines"] == p.launch.num_machines
    assert launch["main_process_port"] == p.launch.main_process_port
    assert launch["multi_gpu"] is (p.launch.num_processes > 1)


def test_each_part_loads_as_exactly_its_images_and_the_steps_add_up(sample_dataset, load_with_sd_scripts, tmp_path):
    """sd-scripts' own dataset code on every part: that part's images with their captions, no overlap, all
    of the dataset together, and optimizer steps (from its own bucketing) adding up to one launch's."""
    resolved = resolve(find_preset("epsilon"), None, [f'run.dataset="{sample_dataset}"',
                                                      f'run.dir="{tmp_path / "run"}"', "schedule.steps_per_part=2"])
    p = resolved.preset
    rp = run.make_plan(p)
    assert len(rp.parts.parts) == 3
    paths = run.write_run_folder(resolved, rp, Path("/sd"), ["kohaku-prep", "train"], str(tmp_path))
    manifest = {str(sample_dataset.resolve() / r["image"]): r
                for r in pq.read_table(sample_dataset / "manifest.parquet").to_pylist()}
    seen: list[str] = []
    steps = 0
    per_step = p.launch.num_processes * p.schedule.gradient_accumulation_steps
    for part in rp.parts.parts:
        run.write_part_folder(p, rp, paths, part.index, Path("/sd"), "epsilon")
        (dataset,) = load_with_sd_scripts(paths.part(part.index).dataset_toml)["datasets"]
        images = {os.path.realpath(image["path"]): image for image in dataset["images"]}
        expected = {str(sample_dataset.resolve() / manifest_image) for manifest_image in
                    rp.images.take(part.rows).to_pylist()}
        assert images.keys() == expected and len(dataset["images"]) == len(part.rows)
        for path, image in images.items():
            assert image["caption"] == manifest[path]["caption"]
            assert image["size"] == [manifest[path]["width"], manifest[path]["height"]]
        assert dataset["batches"] == part.batches
        steps += math.ceil(dataset["batches"] / per_step)  # train_network.py, one epoch per part
        seen += images
    assert sorted(seen) == sorted(manifest)  # every image once
    assert steps == rp.parts.single_launch_steps == rp.steps.optimizer_steps
