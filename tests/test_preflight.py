import json
import shutil
import struct

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kohaku_prep.preset import find_preset, resolve
from kohaku_prep.train import preflight


def epsilon(*overrides):
    return resolve(find_preset("epsilon"), None, list(overrides)).preset


@pytest.mark.parametrize("version, ok, why", [
    ("0.35.4", False, "no Lion8bit"), ("0.37.2", False, "8-bit optimizer bugs"),
    ("0.40.0", False, "8-bit optimizer bugs"),
    ("0.41.0", False, "8-bit optimizer bugs"), ("0.41.1", True, ""), ("0.45.5", True, ""), ("0.50.2+cu124", True, ""),
])
def test_bitsandbytes_versions(version, ok, why):
    check = preflight.check_bitsandbytes("Lion8bit", installed=version)
    assert check.ok is ok and why in check.detail


def test_bitsandbytes_before_lion_is_fine_for_adamw8bit():
    assert preflight.check_bitsandbytes("AdamW8bit", installed="0.35.0").ok


def test_too_few_gpus():
    check = preflight.check_gpus(epsilon(), count=2)
    assert not check.ok and "2 visible, 4 process(es) per machine" in check.detail
    assert preflight.check_gpus(epsilon("launch.num_machines=2"), count=2).ok
    cpu = epsilon("launch.device=cpu", "launch.num_processes=1", "training.mixed_precision=no",
                  "training.full_fp16=false")
    assert preflight.check_gpus(cpu, count=0).ok


def write_safetensors(path, header: dict):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 16)


def test_base_model(tmp_path):
    assert "not set" in preflight.check_base_model(epsilon()).detail
    missing = preflight.check_base_model(epsilon(f'model.pretrained="{tmp_path / "none.safetensors"}"'))
    assert not missing.ok and "no such file" in missing.detail
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 64)
    assert "not a readable safetensors" in preflight.check_base_model(epsilon(f'model.pretrained="{bad}"')).detail
    good = tmp_path / "good.safetensors"
    write_safetensors(good, {"__metadata__": {}, "a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},
                             "b": {"dtype": "F16", "shape": [4], "data_offsets": [8, 16]}})
    check = preflight.check_base_model(epsilon(f'model.pretrained="{good}"'))
    assert check.ok and "2 tensors" in check.detail


def test_dataset_check(sample_dataset, tmp_path):
    assert preflight.check_dataset(epsilon(f'run.dataset="{sample_dataset}"')).ok
    copy = tmp_path / "ds"
    shutil.copytree(sample_dataset, copy)
    table = pq.read_table(copy / "manifest.parquet")
    first = table["image"][0].as_py()
    (copy / first).unlink()
    check = preflight.check_dataset(epsilon(f'run.dataset="{copy}"'))
    assert not check.ok and f"first {first}" in check.detail


def test_separator_leak_is_refused(sample_dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(sample_dataset, copy)
    table = pq.read_table(copy / "manifest.parquet")
    captions = [c.replace("|||", "") for c in table["caption"].to_pylist()]
    table = table.set_column(table.schema.get_field_index("caption"), "caption", pa.array(captions, pa.large_string()))
    pq.write_table(table, copy / "manifest.parquet")
    check = preflight.check_dataset(epsilon(f'run.dataset="{copy}"'))
    assert not check.ok and "exactly one '|||'" in check.detail


def test_a_caption_file_that_differs_from_the_manifest(sample_dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(sample_dataset, copy)
    for txt in (copy / "images").rglob("*.txt"):
        txt.write_text("edited by hand")
    check = preflight.check_dataset(epsilon(f'run.dataset="{copy}"'))
    assert not check.ok and "differs from the manifest" in check.detail


def test_tokenizers(tmp_path):
    cache = tmp_path / "tok"
    for name in ("openai_clip-vit-large-patch14", "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"):
        (cache / name).mkdir(parents=True)
        (cache / name / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    assert preflight.check_tokenizers(epsilon(f'model.tokenizer_cache_dir="{cache}"')).ok
    (cache / "openai_clip-vit-large-patch14" / "tokenizer_config.json").write_text('{"model_max_length": 1e30}')
    assert "CLIP needs 77" in preflight.check_tokenizers(epsilon(f'model.tokenizer_cache_dir="{cache}"')).detail
    empty = tmp_path / "hub"
    empty.mkdir()
    assert not preflight.check_tokenizers(epsilon(), hub_cache=empty, probe=lambda: False).ok
    assert preflight.check_tokenizers(epsilon(), hub_cache=empty, probe=lambda: True).ok


def test_disk(tmp_path):
    p = epsilon()
    state = preflight.state_bytes(384_645_360, p)
    assert state == 384_645_360 * 3  # fp16 weights under full_fp16, 1 byte a parameter of Lion8bit state
    low = preflight.check_disk(p, tmp_path, saves=11, states=3, lokr_params=384_645_360, lokr_file=769_776_396,
                               free=10**9)
    assert not low.ok and "11.9 GB for 11 LoKr file(s) and 3 state(s)" in low.detail
    assert preflight.check_disk(p, tmp_path / "new" / "run", 11, 3, 384_645_360, 769_776_396, free=10**12).ok


def test_sd_scripts_checkout(tmp_path):
    assert "no checkout" in preflight.check_sd_scripts(tmp_path).detail
    (tmp_path / "sdxl_train_network.py").write_text("")
    check = preflight.check_sd_scripts(tmp_path)
    assert not check.ok and "not v0.10.1" in check.detail


def test_logging(monkeypatch, tmp_path):
    assert preflight.check_logging(epsilon()).ok
    monkeypatch.setattr(preflight.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    check = preflight.check_logging(epsilon("logging.log_with=wandb"))
    assert not check.ok and "export WANDB_API_KEY" in check.detail
    monkeypatch.setenv("WANDB_API_KEY", "secret")
    assert preflight.check_logging(epsilon("logging.log_with=wandb")).ok


def test_the_wandb_key_never_reaches_the_command(sample_dataset, tmp_path, monkeypatch):
    from kohaku_prep.train import run
    monkeypatch.setenv("WANDB_API_KEY", "secret-key")
    resolved = resolve(find_preset("epsilon"), None, [f'run.dataset="{sample_dataset}"', f'run.dir="{tmp_path}"',
                                                      "logging.log_with=wandb", "logging.wandb_run_name=eps"])
    rp = run.make_plan(resolved.preset)
    paths = run.write_run_folder(resolved, rp, tmp_path, ["kohaku-prep", "train"], "/")
    run.write_part_folder(resolved.preset, rp, paths, 0, tmp_path, "epsilon")
    for f in [*tmp_path.iterdir(), *paths.part(0).root.iterdir()]:
        assert f.is_dir() or "secret-key" not in f.read_text()
    assert "wandb_api_key" not in paths.part(0).train_toml.read_text()
