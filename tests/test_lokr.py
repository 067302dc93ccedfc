"""LoKr sizing over SDXL. Figures marked (LyCORIS) were measured by scripts/lycoris_count.py, which builds
the network with lycoris-lora 4.1.3 itself on sd-scripts v0.10.1's SDXL modules."""
import pytest

from kohaku_prep.errors import PrepError
from kohaku_prep.preset import LYCORIS_PRESET_DIR
from kohaku_prep.train.lokr import NetworkArgs, factorization, lokr_tensors, plan_network, read_lycoris_preset

DELTA = LYCORIS_PRESET_DIR / "delta_lokr.toml"
EPSILON_ARGS = NetworkArgs(dim=10000, factor=8, conv_dim=10000, train_norm=True, train_text_encoder=True)


@pytest.mark.parametrize("dim, factor, expected", [
    (768, 8, (8, 96)), (1280, 4, (4, 320)), (10240, 2, (2, 5120)), (4, 8, (2, 2)), (320, 8, (8, 40)),
    (2816, 8, (8, 352)), (7, 8, (1, 7)), (12, -1, (3, 4)), (100, 3, (2, 50)),
])
def test_factorization(dim, factor, expected):
    assert factorization(dim, factor) == expected


@pytest.mark.parametrize("shape, factor, params", [  # (LyCORIS) per-module counts
    ((768, 768, ()), 8, 9_280),
    ((5120, 1280, ()), 8, 102_464),
    ((10240, 1280, ()), 2, 3_276_804),
    ((1280, 1280, (3, 3)), 8, 230_464),
    ((320, 4, (3, 3)), 8, 736),
])
def test_full_matrix_module_sizes(shape, factor, params):
    tensors = lokr_tensors(shape[0], shape[1], shape[2], 10000, factor)
    assert sum(__import__("math").prod(s) for k, s in tensors.items() if k != "alpha") == params
    assert set(tensors) == {"alpha", "lokr_w1", "lokr_w2"}


def test_small_dim_decomposes_w2():
    tensors = lokr_tensors(1280, 1280, (), 16, 4)
    assert tensors["lokr_w2_a"] == (320, 16) and tensors["lokr_w2_b"] == (16, 320)


def test_epsilon_network_matches_lycoris():
    plan = plan_network(read_lycoris_preset(DELTA), EPSILON_ARGS)
    assert plan.params == 384_645_360  # (LyCORIS)
    assert plan.params_by_model() == {"te1": 1_331_712, "te2": 9_842_688, "unet": 373_470_960}  # (LyCORIS)
    kinds: dict[tuple[str, str, int | None], int] = {}
    for m in plan.modules:
        kinds[(m.model, m.kind, m.factor)] = kinds.get((m.model, m.kind, m.factor), 0) + 1
    assert kinds == {("te1", "lokr", 8): 72, ("te2", "lokr", 8): 192, ("unet", "lokr", 8): 94,
                     ("unet", "lokr", 4): 560, ("unet", "lokr", 2): 140, ("unet", "norm", None): 256}
    assert plan.file_bytes("fp16") == 769_776_396  # (LyCORIS) saved file, before sd-scripts' metadata
    assert plan.file_bytes("fp16") < 800_000_000  # the card: "under 800MB"


def test_unet_only_drops_the_text_encoders():
    args = NetworkArgs(10000, 8, 10000, True, train_text_encoder=False)
    assert plan_network(read_lycoris_preset(DELTA), args).params == 373_470_960


def test_a_preset_naming_only_sdpa_attention_misses_clip_attention(tmp_path):
    preset = read_lycoris_preset(DELTA)
    preset["text_encoder_target_module"] = ["CLIPSdpaAttention", "CLIPMLP"]
    plan = plan_network(preset, EPSILON_ARGS)
    assert plan.params_by_model()["te1"] < 1_331_712


def test_presets_the_plan_cannot_size(tmp_path):
    odd = tmp_path / "odd.toml"
    odd.write_text('[module_algo_map.CrossAttention]\nalgo = "locon"\n')
    with pytest.raises(PrepError, match="sizes LoKr only"):
        read_lycoris_preset(odd)
    odd.write_text('use_fnmatch = true\n')
    with pytest.raises(PrepError, match="cannot size presets using"):
        read_lycoris_preset(odd)
