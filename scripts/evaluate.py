"""Prompt-adherence benchmark; the same as ``mrflow eval`` (see ``mrflow eval --help``).

python scripts/evaluate.py --out reports/benchmark --presets native 12plus1 20plus1
python scripts/evaluate.py --oracle --out /tmp/oracle      # self-test: expect ~100 %
"""

import sys

from mrflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
