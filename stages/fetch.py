"""DVC stage `fetch`: documents from Entrez or a local corpus into data/articles.parquet."""

import sys

from medsim.pubmed.stage import run_fetch
from medsim.stage import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("fetch", run_fetch))
