"""``python -m tl_radiology`` is the same as the ``tl-radiology`` command."""

import sys

from tl_radiology.cli import main

sys.exit(main())
