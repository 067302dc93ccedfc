"""The dataset half: danbooru metadata -> selection -> captions -> images -> a dataset folder.

What it writes is defined in `kohaku_prep.dataset_format`, the one module it shares with the training half.
"""
