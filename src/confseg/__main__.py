import sys

from confseg.cli import main

sys.exit(main())
