"""``python -m imchat.ops.testbed up|down|status``."""

import sys

from imchat.ops.testbed.commands import main

sys.exit(main(sys.argv[1:]))
