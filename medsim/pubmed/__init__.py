"""Getting documents: NCBI Entrez and PMC (live) and local corpora, into one articles table."""
