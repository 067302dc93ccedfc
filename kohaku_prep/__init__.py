"""kohaku-prep: danbooru2023 metadata to an sd-scripts training run of Kohaku XL Epsilon."""

__version__ = "0.1.0"

# The trainer this tool emits for: kohya-ss/sd-scripts, pinned as the submodule third_party/sd-scripts.
SD_SCRIPTS_TAG = "v0.10.1"
SD_SCRIPTS_COMMIT = "ae72efb92babe89ff8e70f057e42db68440e8d61"
