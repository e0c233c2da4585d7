"""``python -m mmfeatvis.cli``: the same command as ``mmfeatvis``."""
import sys

from . import main

sys.exit(main(prog='mmfeatvis'))
