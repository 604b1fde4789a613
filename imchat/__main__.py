"""``python -m imchat <command>``: the operator's commands."""

import sys

from imchat.cli import main

sys.exit(main())
