"""A regular (not editable) install is complete: the wheel, installed into a new virtual environment,
lists and resolves the shipped presets and builds, plans and writes a run from the sample, run from a
folder outside the source tree."""
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from helpers import preset_golden

from kohaku_prep.preset import shipped_presets

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin folder of a new environment holding the wheel; its dependencies are those of this one
    (a .pth file points at them), so no index is needed for them."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = (work / "dist").glob("kohaku_prep-*.whl")
    env = work / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "-q",
                    "--no-index", "--no-deps", str(wheel)], check=True, capture_output=True)
    site = subprocess.run([env / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "kohaku_prep_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env / "bin"


def prep(bin_dir: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "kohaku-prep"), *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_the_installed_wheel_ships_presets_and_builds_the_sample(installed, tmp_path):
    where = prep(installed, tmp_path, "--debug", "validate", "epsilon")
    assert where.returncode == 0, where.stderr
    layer = next(line for line in where.stdout.splitlines() if line.endswith("epsilon.toml"))
    assert str(installed.parent) in layer and "site-packages/kohaku_prep/presets/" in layer  # not the source tree
    listed = prep(installed, tmp_path, "presets")
    assert listed.returncode == 0
    assert listed.stdout == "".join(preset_golden(path, "listing.txt") for path in shipped_presets())
    assert prep(installed, tmp_path, "sample", "s", "--posts", "400").returncode == 0
    built = prep(installed, tmp_path, "dataset", "--metadata", "s/metadata/flat", "--images", "s/images", "--out", "d",
                 "selection.pools.0.take=40", "selection.pools.1.take=80", "output.ids_per_folder=1000000")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "d" / "manifest.parquet").is_file()
    planned = prep(installed, tmp_path, "plan", "--dataset", "d")
    assert planned.returncode == 0, planned.stderr
    assert "LoKr              384,645,360 parameters" in planned.stdout  # the shipped LyCORIS preset was read
    run = prep(installed, tmp_path, "train", "--dry-run", "--dataset", "d", "--run-dir", "r")
    assert "dry run:" in run.stderr and "Traceback" not in run.stderr
    shipped = installed.parent / Path(layer.split("layer: ")[1]).relative_to(installed.parent)
    assert (tmp_path / "r" / "lycoris_preset.toml").read_bytes() == \
        (shipped.parent / "lycoris" / "delta_lokr.toml").read_bytes()
    assert (tmp_path / "r" / "prompts.txt").is_file()
