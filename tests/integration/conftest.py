"""The integration tier: sd-scripts' own code, run in the trainer's Python environment.

It needs the checkout at third_party/sd-scripts (or KOHAKU_SD_SCRIPTS) and a Python that can import
it: KOHAKU_TRAINER_PYTHON, else the Python running the tests (once the trainer's requirements are
installed in it). Without them every test here is skipped, with the reason.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def sd_scripts() -> Path:
    path = Path(os.environ.get("KOHAKU_SD_SCRIPTS", ROOT / "third_party" / "sd-scripts"))
    if not (path / "sdxl_train_network.py").is_file():
        pytest.skip(f"sd-scripts checkout absent at {path} (git submodule update --init third_party/sd-scripts)")
    return path


@pytest.fixture(scope="session")
def trainer_python(sd_scripts) -> str:
    python = os.environ.get("KOHAKU_TRAINER_PYTHON", sys.executable)
    if not Path(python).exists():
        pytest.skip(f"no trainer Python at {python} (set KOHAKU_TRAINER_PYTHON)")
    probe = subprocess.run([python, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import library.config_util",
                            str(sd_scripts)], capture_output=True, text=True)
    if probe.returncode:
        reason = probe.stderr.strip().splitlines()[-1]
        pytest.skip(f"{python} cannot import sd-scripts ({reason}): make setup-train, or set KOHAKU_TRAINER_PYTHON")
    return python


@pytest.fixture(scope="session")
def load_with_sd_scripts(sd_scripts, trainer_python):
    def load(dataset_toml: Path, draws: int = 0) -> dict:
        result = subprocess.run([trainer_python, str(Path(__file__).parent / "sd_scripts_probe.py"),
                                 str(sd_scripts), str(dataset_toml), str(draws)],
                                capture_output=True, text=True)
        if result.returncode:
            raise AssertionError(f"sd-scripts rejected {dataset_toml}:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout)
    return load
