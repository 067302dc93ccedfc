"""The committed interface facts (kohaku_prep/data/sd_scripts_interface.json) are exactly what
scripts/snapshot_interface.py extracts from the pinned sd-scripts checkout.
"""
import json
import subprocess
from pathlib import Path

import pytest

from kohaku_prep.interface import FACTS_FILE

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "snapshot_interface.py"
COMMITTED = FACTS_FILE


def _option_differences(expected: list, actual: list) -> list:
    by_flag_e = {o["flag"]: o for o in expected}
    by_flag_a = {o["flag"]: o for o in actual}
    lines = [f"option {f} only in the committed file" for f in by_flag_e if f not in by_flag_a]
    lines += [f"option {f} only in the checkout" for f in by_flag_a if f not in by_flag_e]
    for flag, want in by_flag_e.items():
        got = by_flag_a.get(flag)
        if got is None:
            continue
        for field in sorted(want.keys() | got.keys()):
            if want.get(field, "<absent>") != got.get(field, "<absent>"):
                lines.append(f"option {flag}: {field} committed {want.get(field, '<absent>')!r}, "
                             f"checkout {got.get(field, '<absent>')!r}")
    common_e = [f for f in by_flag_e if f in by_flag_a]
    common_a = [f for f in by_flag_a if f in by_flag_e]
    if not lines and common_e != common_a:
        first = next(i for i, (e, a) in enumerate(zip(common_e, common_a, strict=False)) if e != a)
        lines.append(f"options in another order from position {first}: committed {common_e[first:first + 3]}, "
                     f"checkout {common_a[first:first + 3]}")
    if len(by_flag_e) != len(expected) or len(by_flag_a) != len(actual):
        lines.append("a flag is listed twice")
    return lines


def _key_differences(expected: dict, actual: dict) -> list:
    lines = [f"dataset level {lv!r} only in the committed file" for lv in expected if lv not in actual]
    lines += [f"dataset level {lv!r} only in the checkout" for lv in actual if lv not in expected]
    for level, want in expected.items():
        got = actual.get(level)
        if got is None:
            continue
        lines += [f"[{level}] key {k} only in the committed file" for k in want if k not in got]
        lines += [f"[{level}] key {k} only in the checkout" for k in got if k not in want]
        lines += [f"[{level}] key {k}: committed {want[k]!r}, checkout {got[k]!r}"
                  for k in want if k in got and want[k] != got[k]]
        if want == got and list(want) != list(got):
            lines.append(f"[{level}] keys in another order")
    if expected == actual and list(expected) != list(actual):
        lines.append("dataset levels in another order")
    return lines


def differences(expected: dict, actual: dict) -> list:
    lines = []
    for key in sorted(expected.keys() | actual.keys()):
        if key in ("sdxl_train_network_options", "dataset_config_keys"):
            continue
        if expected.get(key, "<absent>") != actual.get(key, "<absent>"):
            lines.append(f"{key}: committed {expected.get(key, '<absent>')!r}, "
                         f"checkout {actual.get(key, '<absent>')!r}")
    lines += _option_differences(expected.get("sdxl_train_network_options", []),
                                 actual.get("sdxl_train_network_options", []))
    lines += _key_differences(expected.get("dataset_config_keys", {}), actual.get("dataset_config_keys", {}))
    if not lines and list(expected) != list(actual):
        lines.append(f"top-level keys in another order: committed {list(expected)}, checkout {list(actual)}")
    return lines


def test_snapshot_script_reproduces_the_committed_interface(sd_scripts, trainer_python, tmp_path):
    out = tmp_path / "sd_scripts_interface.json"
    result = subprocess.run([trainer_python, str(SCRIPT), "--sd-scripts", str(sd_scripts), "--out", str(out)],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        pytest.fail(f"{SCRIPT.name} failed:\n{result.stderr[-3000:]}", pytrace=False)

    committed_bytes, produced_bytes = COMMITTED.read_bytes(), out.read_bytes()
    committed, produced = json.loads(committed_bytes), json.loads(produced_bytes)
    diff = differences(committed, produced)
    if diff or committed != produced:
        pytest.fail(
            f"{COMMITTED} differs from what {SCRIPT.name} extracts from {sd_scripts} "
            f"({len(diff)} difference(s)):\n" + "\n".join(diff[:60]) + ("\n..." if len(diff) > 60 else ""),
            pytrace=False)

    if committed_bytes != produced_bytes:
        at = next((i for i, (c, p) in enumerate(zip(committed_bytes, produced_bytes, strict=False)) if c != p),
                  min(len(committed_bytes), len(produced_bytes)))
        pytest.fail(
            f"same content, different formatting: first differing byte at offset {at} "
            f"(committed {committed_bytes[max(0, at - 40):at + 40]!r}, "
            f"produced {produced_bytes[max(0, at - 40):at + 40]!r}; "
            f"lengths {len(committed_bytes)} vs {len(produced_bytes)})", pytrace=False)
