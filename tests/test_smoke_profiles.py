"""make smoke and make gpu-check run what their issue asks for: accumulation 2, the parts they claim."""
import importlib.util
from pathlib import Path

import pytest

from kohaku_prep.preset import find_preset, resolve
from kohaku_prep.train import run

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "smoke.py"
spec = importlib.util.spec_from_file_location("smoke", SCRIPT)
assert spec is not None and spec.loader is not None
smoke = importlib.util.module_from_spec(spec)
spec.loader.exec_module(smoke)


@pytest.mark.parametrize("profile, parts, resolution", [("smoke", 3, 128), ("gpu", 2, 1024)])
def test_profiles_resolve_to_runs_in_parts_with_accumulation_2(profile, parts, resolution, sample_dataset, tmp_path):
    resolved = resolve(find_preset("epsilon"), None, [*smoke.PROFILES[profile], *smoke.COMMON,
                                                      f"run.dataset={sample_dataset}", f"run.dir={tmp_path}"])
    p = resolved.preset
    rp = run.make_plan(p)
    assert len(rp.parts.parts) == parts and p.schedule.gradient_accumulation_steps == 2
    assert p.dataset.resolution == resolution and rp.parts.steps == rp.parts.single_launch_steps
    assert (p.launch.device == "cpu") is (profile == "smoke")
