"""DVC stage `evaluate`: metrics/*.json (Tables 1-3, retrieval, modality, text benchmark),
plots/*.png and metrics/REPORT.md."""

import sys

from medsim.evaluate.run import run_evaluate
from medsim.stage import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("evaluate", run_evaluate))
