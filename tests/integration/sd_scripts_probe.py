"""Runs inside the trainer's Python: loads a dataset TOML with sd-scripts' own code, prints JSON.

Usage: python sd_scripts_probe.py SD_SCRIPTS_DIR DATASET_TOML DRAWS
For every image sd-scripts found: its path, the caption it read, its size and bucket, and DRAWS
outputs of sd-scripts' own caption processing (shuffle, tag dropout, keep-tokens separator).
"""
import json
import logging
import random
import sys

logging.basicConfig(level=logging.ERROR)  # before sd-scripts installs its own INFO handler
sd_scripts, dataset_toml, draws = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, sd_scripts)

import sdxl_train_network  # noqa: E402
from library import config_util, train_util  # noqa: E402

# the same steps as NetworkTrainer.train() and SdxlNetworkTrainer.assert_extra_args in v0.10.1
args = sdxl_train_network.setup_parser().parse_args(["--dataset_config", dataset_toml])
train_util.prepare_dataset_args(args, True)
sanitizer = config_util.ConfigSanitizer(True, True, args.masked_loss, True)
blueprint = config_util.BlueprintGenerator(sanitizer).generate(config_util.load_user_config(dataset_toml), args)
group, _ = config_util.generate_dataset_group_by_blueprint(blueprint.dataset_group)
group.verify_bucket_reso_steps(32)

random.seed(0)
out: dict[str, list[dict]] = {"datasets": []}
for ds in group.datasets:
    subsets = [{k: getattr(s, k) for k in ("image_dir", "caption_extension", "shuffle_caption",
                                           "keep_tokens_separator", "caption_tag_dropout_rate", "num_repeats")}
               for s in ds.subsets]
    images = []
    for key, info in ds.image_data.items():
        subset = ds.image_to_subset[key]
        images.append({"path": info.absolute_path, "caption": info.caption, "size": list(info.image_size),
                       "bucket": list(info.bucket_reso),
                       "processed": [ds.process_caption(subset, info.caption) for _ in range(draws)]})
    out["datasets"].append({"batch_size": ds.batch_size, "resolution": [ds.width, ds.height], "batches": len(ds),
                            "subsets": subsets, "images": images})
json.dump(out, sys.stdout)
