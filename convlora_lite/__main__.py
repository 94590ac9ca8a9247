"""``python -m convlora_lite`` is the ``convlora`` command line."""
import sys

from .cli import main

sys.exit(main())
