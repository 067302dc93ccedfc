"""`python -m kohaku_prep`: the same as the kohaku-prep command."""
from kohaku_prep.cli import main

main(prog_name="kohaku-prep")
