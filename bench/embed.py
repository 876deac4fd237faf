"""Multilingual sentence-embedding benchmark (MiniLM teacher -> en/es/zh student); same as `xdistill bench embed`.

python bench/embed.py --data-dir ../shared/data [--quick] [--out bench/results/embed.json]
"""

import sys

from xdistill.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "bench", "embed", *sys.argv[1:]]
    main()
