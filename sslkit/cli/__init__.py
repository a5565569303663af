"""The ``sslkit`` command line.

Importing this package (which the console script and ``python -m sslkit`` do before torch is
loaded) sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it: with the default
active policy, idle OpenMP threads spin and take the cores from the data-loader workers, which
slows CPU training several-fold (measured in docs/performance.md).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
