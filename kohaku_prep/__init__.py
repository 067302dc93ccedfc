"""kohaku-prep: danbooru2023 metadata to an sd-scripts training run of Kohaku XL Epsilon."""

__version__ = "0.1.0"
