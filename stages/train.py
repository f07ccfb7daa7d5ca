"""DVC stage `train`: metric-learning projection and hashing heads -> data/model/."""

import sys

from medsim.dml.train import run_train
from medsim.stage import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("train", run_train))
