"""``python -m nnfast`` runs the ``nnfast`` command line."""
import sys

from nnfast.cli import main

sys.exit(main())
