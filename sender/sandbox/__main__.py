"""``python -m sender.sandbox``: the same as ``tokenstore sandbox`` (see ``--help``)."""

from __future__ import annotations

import sys

from tokenstore.cli import main

if __name__ == "__main__":
    sys.exit(main(["sandbox", *sys.argv[1:]]))
