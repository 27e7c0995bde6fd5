__version__ = "0.0.1"

import os as _os
# Idle OpenMP threads sleep instead of spinning: on small shared CPUs (Colab's 2 cores, CI) spinning
# threads starve the data loader and the other process, making CPU training steps 2-3x slower
# (measured in nbs/70_performance.ipynb). It must be set before torch is imported; a user's own
# setting wins.
_os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
