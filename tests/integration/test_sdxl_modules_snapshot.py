"""The committed SDXL module table (behind the LoKr sizing) is what the pinned sd-scripts builds."""
import json
import subprocess
from pathlib import Path

from kohaku_prep.train.lokr import MODULES_FILE

ROOT = Path(__file__).resolve().parents[2]


def test_module_table_matches_the_checkout(sd_scripts, trainer_python, tmp_path):
    out = tmp_path / "sdxl_modules.json"
    result = subprocess.run([trainer_python, str(ROOT / "scripts" / "snapshot_sdxl_modules.py"), "--sd-scripts",
                             str(sd_scripts), "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh, committed = json.loads(out.read_text()), json.loads(MODULES_FILE.read_text())
    for model in committed["models"]:
        assert fresh["models"][model]["modules"] == committed["models"][model]["modules"], model
