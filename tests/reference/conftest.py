"""The reference tier: the self-tests of the reference caption rule (reference_caption.py), the
deliberately simple oracle that the caption tests compare the real code with. They test the oracle
against the recipe, not the product, so they run and are counted apart (`-m reference`)."""
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.reference)
