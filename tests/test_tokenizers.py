import json

from click.testing import CliRunner
from helpers import needs_clip_bpe

from kohaku_prep.cli import main
from kohaku_prep.preset import find_preset, resolve
from kohaku_prep.train import tokenizers
from kohaku_prep.train.preflight import check_tokenizers


def test_byte_symbols_cover_every_byte_once():
    symbols = tokenizers.byte_symbols()
    assert len(symbols) == len(set(symbols)) == 256
    assert symbols[0] == "!" and symbols[-1] == chr(256 + 67)


@needs_clip_bpe
def test_vocabulary_has_clips_ids():
    vocab, merges = tokenizers.vocabulary(tokenizers.find_bpe())
    assert len(vocab) == 49_408 and len(merges) == 48_894
    # CLIP's ids for "a photo of a cat": 49406 320 1125 539 320 2368 49407
    assert [vocab[t] for t in ("<|startoftext|>", "a</w>", "photo</w>", "of</w>", "cat</w>", "<|endoftext|>")] == [
        49406, 320, 1125, 539, 2368, 49407]


@needs_clip_bpe
def test_cache_layout_is_what_sd_scripts_and_preflight_expect(tmp_path):
    result = CliRunner().invoke(main, ["tokenizers", str(tmp_path / "tok")])
    assert result.exit_code == 0, result.output
    for name, pad in (("openai_clip-vit-large-patch14", "<|endoftext|>"),
                      ("laion_CLIP-ViT-bigG-14-laion2B-39B-b160k", "!")):
        folder = tmp_path / "tok" / name
        assert sorted(p.name for p in folder.iterdir()) == ["merges.txt", "special_tokens_map.json",
                                                            "tokenizer_config.json", "vocab.json"]
        config = json.loads((folder / "tokenizer_config.json").read_text())
        assert config["model_max_length"] == 77 and config["pad_token"] == pad
        assert (folder / "merges.txt").read_text().startswith("#version: 0.2\ni n\n")
    preset = resolve(find_preset("epsilon"), None, [f'model.tokenizer_cache_dir="{tmp_path / "tok"}"']).preset
    assert check_tokenizers(preset).ok


def test_not_a_bpe_file(tmp_path):
    bad = tmp_path / "bpe.txt.gz"
    bad.write_bytes(b"not gzip")
    result = CliRunner().invoke(main, ["tokenizers", str(tmp_path / "tok"), "--bpe", str(bad)])
    assert result.exit_code == 1 and "not a gzipped CLIP BPE file" in result.output
