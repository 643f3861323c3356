"""`python -m emlab.cli`: the same entry point as the `emlab` command."""

from emlab.cli import main

main()
