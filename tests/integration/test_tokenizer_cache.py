"""sd-scripts' own SDXL tokenize strategy loads the offline cache and tokenizes as CLIP does."""
import json
import subprocess

from click.testing import CliRunner

from kohaku_prep.cli import main

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from library.strategy_sdxl import SdxlTokenizeStrategy
strategy = SdxlTokenizeStrategy(225, sys.argv[2])
ids = [t[0].tolist() for t in strategy.tokenize("a photo of a cat")]
print(json.dumps({"ids": ids, "max": [strategy.tokenizer1.model_max_length, strategy.tokenizer2.model_max_length]}))
"""


def test_sd_scripts_tokenizes_offline_from_the_cache(sd_scripts, trainer_python, tmp_path):
    assert CliRunner().invoke(main, ["tokenizers", str(tmp_path / "tok")]).exit_code == 0
    result = subprocess.run([trainer_python, "-c", PROBE, str(sd_scripts), str(tmp_path / "tok")],
                            capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["max"] == [77, 77]
    for chunk_ids in out["ids"]:  # 225 tokens: three 77-token chunks, the first holding the caption
        assert chunk_ids[0][:7] == [49406, 320, 1125, 539, 320, 2368, 49407]
