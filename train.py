"""`python train.py [flags]` is `kgan train [flags]`; see `python train.py --help`."""

import sys

from kgan.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
