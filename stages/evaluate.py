"""DVC stage `evaluate`: metrics/*.json (Tables 1-3, retrieval, modality, text benchmark),
plots/*.png and metrics/REPORT.md."""

import os
import sys

# Before torch loads OpenMP: idle threads sleep at a barrier instead of spinning. On a
# shared machine spinning threads burn the cores other jobs wait for (a tuning step took
# 1.5x the CPU time and 1.8x the wall time with 5 jobs on 2 cores); results are identical.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from medsim.evaluate.stage import run_evaluate
from medsim.stage import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("evaluate", run_evaluate))
