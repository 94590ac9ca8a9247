"""``python -m convlora_lite`` is the ``convlora`` command line."""
import sys

from convlora_lite.cli import main

sys.exit(main())
