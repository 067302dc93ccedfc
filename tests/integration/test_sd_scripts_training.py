"""The pinned trainer's own parser reads every run folder the shipped presets produce as meant."""
import json
import subprocess
from pathlib import Path

import pytest

from kohaku_prep import run, training
from kohaku_prep.preset import resolve, shipped_presets


@pytest.mark.parametrize("preset", shipped_presets(), ids=lambda p: p.stem)
def test_trainer_parses_the_run_folder(preset, sample_dataset, sd_scripts, trainer_python, tmp_path):
    resolved = resolve(preset, None, [f'run.dataset="{sample_dataset}"', f'run.dir="{tmp_path / "run"}"',
                                      f'model.pretrained="{tmp_path / "base.safetensors"}"'])
    p = resolved.preset
    rp = run.make_plan(p)
    argv, _ = run.write_run_folder(resolved, rp, sd_scripts, preset.stem,
                                   ["--resume", "/x/state", "--skip_until_initial_step"])
    result = subprocess.run([trainer_python, str(Path(__file__).parent / "sd_scripts_parse.py"), str(sd_scripts),
                             json.dumps(argv)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout)
    trainer, launch = parsed["trainer"], parsed["launch"]
    config = training.training_config(p, training.RunPaths(tmp_path / "run"))
    for key, value in config.items():
        assert trainer[key] == value, key
    # what the recipe means, as the trainer now holds it
    assert trainer["lr_warmup_steps"] == p.schedule.warmup_optimizer_steps * p.launch.num_processes
    assert isinstance(trainer["lr_warmup_steps"], int)
    assert trainer["mixed_precision"] == p.training.mixed_precision == launch["mixed_precision"]
    assert trainer["seed"] == p.schedule.seed
    assert trainer["resume"] == "/x/state" and trainer["skip_until_initial_step"] is True
    assert trainer["caption_extension"] == ".caption"  # argparse's default: only the dataset TOML sets .txt
    assert launch["num_processes"] == p.launch.num_processes and launch["num_machines"] == p.launch.num_machines
    assert launch["main_process_port"] == p.launch.main_process_port
    assert launch["multi_gpu"] is (p.launch.num_processes > 1)
