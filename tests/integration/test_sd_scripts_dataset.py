"""sd-scripts v0.10.1 itself reads the dataset we build exactly as we mean it."""
import subprocess

import pyarrow.parquet as pq

from kohaku_prep import SD_SCRIPTS_COMMIT


def test_checkout_is_the_pinned_commit(sd_scripts):
    head = subprocess.run(["git", "-C", str(sd_scripts), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert head.stdout.strip() == SD_SCRIPTS_COMMIT


def test_sd_scripts_loads_every_image_with_its_caption(sample_dataset, load_with_sd_scripts):
    loaded = load_with_sd_scripts(sample_dataset / "dataset.toml")
    (dataset,) = loaded["datasets"]
    assert dataset["batch_size"] == 4 and dataset["resolution"] == [1024, 1024]
    for subset in dataset["subsets"]:
        assert (subset["caption_extension"], subset["shuffle_caption"], subset["keep_tokens_separator"],
                subset["caption_tag_dropout_rate"], subset["num_repeats"]) == (".txt", True, "|||", 0.15, 1)
    manifest = {str(sample_dataset.resolve() / r["image"]): r
                for r in pq.read_table(sample_dataset / "manifest.parquet").to_pylist()}
    seen = {image["path"]: image for image in dataset["images"]}
    assert seen.keys() == manifest.keys()
    for path, image in seen.items():
        assert image["caption"] == manifest[path]["caption"]
        assert image["size"] == [manifest[path]["width"], manifest[path]["height"]]


def test_sd_scripts_keeps_the_head_and_shuffles_only_the_tail(sample_dataset, load_with_sd_scripts):
    (dataset,) = load_with_sd_scripts(sample_dataset / "dataset.toml", draws=20)["datasets"]
    dropped = kept = 0
    orders = set()
    for image in dataset["images"]:
        head, tail = image["caption"].split("|||")
        head_tags = [t for t in head.split(", ") if t]
        tail_tags = tail.split(", ")
        for text in image["processed"]:
            assert "|||" not in text
            tags = text.split(", ")
            assert tags[:len(head_tags)] == head_tags
            rest = tags[len(head_tags):]
            assert set(rest) <= set(tail_tags) and len(rest) == len(set(rest))
            kept += len(rest)
            dropped += len(tail_tags) - len(rest)
            orders.add(tuple(rest))
    assert 0.10 < dropped / (kept + dropped) < 0.20  # caption_tag_dropout_rate 0.15
    assert len(orders) > len(dataset["images"])  # shuffled, not one fixed order per image


def test_plan_assigns_the_buckets_sd_scripts_assigns(sample_dataset, load_with_sd_scripts):
    import numpy as np

    from kohaku_prep import bucketing
    from kohaku_prep.preset import find_preset, resolve
    from kohaku_prep.train import plan

    (dataset,) = load_with_sd_scripts(sample_dataset / "dataset.toml")["datasets"]
    ds = resolve(find_preset("epsilon")).preset.dataset
    resos = bucketing.bucket_resolutions(ds.resolution, ds.min_bucket_reso, ds.max_bucket_reso, ds.bucket_reso_steps)
    sizes = np.array([image["size"] for image in dataset["images"]])
    ours = [list(resos[i]) for i in bucketing.assign_buckets(sizes[:, 0], sizes[:, 1], resos)]
    assert ours == [image["bucket"] for image in dataset["images"]]
    counts = np.unique(np.array(ours), axis=0, return_counts=True)[1]
    resolved = resolve(find_preset("epsilon")).preset
    steps = plan.step_plan([((0, 0), int(n)) for n in counts], resolved)
    assert steps.batches == dataset["batches"]
