"""Export / int8 / serve benchmark; same as `xdistill bench export`.

python bench/export.py --data-dir ../shared/data [--quick] [--mt en-es=runs/.../student] [--out bench/results/export.json]
"""

import sys

from xdistill.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "bench", "export", *sys.argv[1:]]
    main()
