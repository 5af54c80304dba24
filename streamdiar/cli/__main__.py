"""`python -m streamdiar.cli`: the `streamdiar` command."""

import sys

from streamdiar.cli import main

sys.exit(main())
