import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers, nasty_posts, reference.reference_caption

from helpers import build_sample  # noqa: E402

from kohaku_prep.dataset import sample  # noqa: E402


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    sample.generate(root)
    return root


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
