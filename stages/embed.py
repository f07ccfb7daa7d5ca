"""DVC stage `embed`: articles, captions, tables, figures -> data/embeddings/*.parquet."""

import sys

from medsim.encoders.stage import run_embed
from medsim.stage import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("embed", run_embed))
