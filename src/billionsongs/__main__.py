import sys

from billionsongs.cli import main

sys.exit(main())
