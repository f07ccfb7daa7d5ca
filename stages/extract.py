"""DVC stage `extract`: figures and tables from the PDFs (issue #3, not built yet)."""

import sys

from medsim.stage import StageNotImplemented, run_stage


def not_built(params, root):
    raise StageNotImplemented("extract", 3, "figures and tables from the PDFs")


if __name__ == "__main__":
    sys.exit(run_stage("extract", not_built))
