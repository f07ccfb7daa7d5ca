"""DVC stage `evaluate`: metrics tables, plots and report (issue #6, not built yet)."""

import sys

from medsim.stage import StageNotImplemented, run_stage


def not_built(params, root):
    raise StageNotImplemented("evaluate", 6, "metrics tables, plots and report")


if __name__ == "__main__":
    sys.exit(run_stage("evaluate", not_built))
