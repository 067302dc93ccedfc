"""The training half: preset -> network and optimizer args -> run and part folders -> sd-scripts launches.

It reads a built dataset only through `kohaku_prep.dataset_format` (folder layout, manifest, dataset TOML).
"""
