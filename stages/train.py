"""DVC stage `train`: metric-learning projection heads (issue #5, not built yet)."""

import sys

from medsim.stage import StageNotImplemented, run_stage


def not_built(params, root):
    raise StageNotImplemented("train", 5, "metric-learning projection heads")


if __name__ == "__main__":
    sys.exit(run_stage("train", not_built))
