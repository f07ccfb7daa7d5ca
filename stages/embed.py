"""DVC stage `embed`: text and image encoders (issue #4, not built yet)."""

import sys

from medsim.stage import StageNotImplemented, run_stage


def not_built(params, root):
    raise StageNotImplemented("embed", 4, "text and image encoders")


if __name__ == "__main__":
    sys.exit(run_stage("embed", not_built))
