"""DVC stage `index`: FAISS float and binary indexes over the trained shared space.

Reads data/model, data/embeddings/*.parquet and the item metadata (articles, figure captions,
tables); writes data/index/ (see medsim.search.index) for `medsim search` and `medsim explain`.
"""

import sys

from medsim.search.stage import run_index
from medsim.stage import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("index", run_index))
