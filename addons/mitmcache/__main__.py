"""``python -m mitmcache`` (with ``addons/`` on ``sys.path``): the lean production launcher."""

import sys

from mitmcache.launcher import main

sys.exit(main())
