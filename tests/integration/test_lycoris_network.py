"""LyCORIS itself builds every shipped network preset on sd-scripts' SDXL modules; the plan agrees."""
import json
import subprocess
from pathlib import Path

import pytest

from kohaku_prep.preset import shipped_lycoris_presets
from kohaku_prep.train.lokr import LYCORIS_DEFAULT_PRESET, NetworkArgs, lora_name, plan_network, read_lycoris_preset

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("preset", [*shipped_lycoris_presets(), None], ids=lambda p: p.stem if p else "no preset")
def test_lycoris_builds_the_network_the_plan_sizes(preset, sd_scripts, trainer_python):
    result = subprocess.run([trainer_python, str(ROOT / "scripts" / "lycoris_count.py"), "--sd-scripts",
                             str(sd_scripts), "--preset", str(preset or "")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    real = json.loads(result.stdout)
    rules = read_lycoris_preset(preset) if preset else LYCORIS_DEFAULT_PRESET  # network.preset = ""
    plan = plan_network(rules, NetworkArgs(10000, 8, 10000, True, True))
    assert real["total_params"] == plan.params
    assert {m["lora_name"]: m["params"] for m in real["modules"]} == {lora_name(m): m.params for m in plan.modules}
    assert real["state_dict"]["fp16_file_bytes_without_metadata"] == plan.file_bytes("fp16")


@pytest.mark.parametrize("preset", shipped_lycoris_presets(), ids=lambda p: p.stem)
def test_lycoris_accepts_the_preset_file(preset, trainer_python):
    code = "import sys; from lycoris.utils.preset import read_preset; sys.exit(read_preset(sys.argv[1]) is None)"
    assert subprocess.run([trainer_python, "-c", code, str(preset)], capture_output=True).returncode == 0
