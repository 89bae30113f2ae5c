"""`python -m harness.grid GRID.yaml`: run the cross product of a grid file's options."""

import sys

from .spec import main

sys.exit(main())
