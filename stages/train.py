"""DVC stage `train`: metric-learning projection and hashing heads -> data/model/."""

import os
import sys

# Before torch loads OpenMP: idle threads sleep at a barrier instead of spinning. On a
# shared machine spinning threads burn the cores other jobs wait for (a tuning step took
# 1.5x the CPU time and 1.8x the wall time with 5 jobs on 2 cores); results are identical.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from medsim.dml.stage import run_train
from medsim.stage import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("train", run_train))
