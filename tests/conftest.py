import shutil
import sys
from pathlib import Path

import pytest

from kohaku_prep import build, sample
from kohaku_prep.preset import PRESET_DIR, resolve

TESTS = Path(__file__).resolve().parent
GOLDEN = TESTS / "golden"
sys.path.insert(0, str(TESTS))  # reference_caption, nasty_posts

SAMPLE_OVERRIDES = ["selection.pools.0.take=320", "selection.pools.1.take=650", "output.ids_per_folder=1000000"]


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    sample.generate(root)
    return root


def resolve_sample(sample_root: Path, out: Path, shape: str = "flat", extra: list[str] = ()):
    return resolve(PRESET_DIR / "epsilon.toml", None, [
        f'input.metadata="{sample_root / "metadata" / shape}"', f'input.images="{sample_root / "images"}"',
        f'output.dir="{out}"', *SAMPLE_OVERRIDES, *extra])


def build_sample(sample_root: Path, out: Path, shape: str = "flat", extra: list[str] = (), force=False):
    resolved = resolve_sample(sample_root, out, shape, extra)
    plan = build.plan_dataset(resolved.preset, lambda line: None)
    return build.write_dataset(plan, resolved, force, lambda line: None)


@pytest.fixture(scope="session")
def sample_dataset(sample_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "dataset"
    build_sample(sample_root, out)
    return out


@pytest.fixture
def copy_sample(sample_root, tmp_path) -> Path:
    """A private copy of the sample, for tests that damage it."""
    dest = tmp_path / "sample"
    shutil.copytree(sample_root, dest)
    return dest
