"""DVC stage `extract`: figures and tables from the PDFs, plus the corpus's own images."""

import sys

from medsim.pdf.stage import run_extract
from medsim.stage import run_stage

if __name__ == "__main__":
    sys.exit(run_stage("extract", run_extract))
