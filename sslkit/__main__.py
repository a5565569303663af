"""``python -m sslkit`` (also what ``torchrun -m sslkit`` runs)."""

import sys

from sslkit.cli.main import main

sys.exit(main())
