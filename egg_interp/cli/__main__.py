"""``python -m egg_interp.cli`` (what ``torchrun`` / ``accelerate launch`` start)."""

import sys

from egg_interp.cli import main

sys.exit(main())
