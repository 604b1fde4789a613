"""``python -m imchat <command>``: the operator's commands."""

import sys

from imchat.ops.cli import main

sys.exit(main())
