"""`python -m kgan COMMAND ...`: the same as the `kgan` console script."""

from kgan.cli import main

main()
