"""DVC stage `index`: FAISS index and medsim search (issue #7, not built yet)."""

import sys

from medsim.stage import StageNotImplemented, run_stage


def not_built(params, root):
    raise StageNotImplemented("index", 7, "FAISS index and medsim search")


if __name__ == "__main__":
    sys.exit(run_stage("index", not_built))
