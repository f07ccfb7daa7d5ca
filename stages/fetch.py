"""DVC stage `fetch`: documents from Entrez or a local corpus -> data/articles.parquet, data/raw/."""

import sys

from medsim.fetch import run_fetch
from medsim.stage import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("fetch", run_fetch))
