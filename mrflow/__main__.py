import sys

from mrflow.cli import main

sys.exit(main())
