"""Cross-lingual sentiment benchmark on MARC; same as `xdistill bench marc`.

python bench/marc.py --data-dir ../shared/data [--quick] [--seeds 3] [--out bench/results/marc.json]
"""

import sys

from xdistill.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "bench", "marc", *sys.argv[1:]]
    main()
