"""The shipped presets, installed as package data (see pyproject.toml): recipe TOMLs here, LyCORIS
network presets in lycoris/, sample prompts in prompts/."""
