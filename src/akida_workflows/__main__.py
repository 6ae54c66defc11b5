"""``python -m akida_workflows`` runs the ``akida-workflows`` command line."""

import sys

from .cli import main

sys.exit(main())
