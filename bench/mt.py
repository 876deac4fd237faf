"""Translation distillation benchmark (Apertium -> en-es, trained teacher -> en-zh); same as `xdistill bench mt`.

python bench/mt.py --data-dir ../shared/data [--quick] [--pair en-es] [--out bench/results/mt.json]
"""

import sys

from xdistill.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "bench", "mt", *sys.argv[1:]]
    main()
