"""``medsim serve``: a local search page and JSON API over ``data/index/``.

- :mod:`medsim.serve.service`: the index, encoders and corpus loaded once; queries, limits
  and one-line errors for bad input.
- :mod:`medsim.serve.corpus`: article links, figure pictures and table cells, by id.
- :mod:`medsim.serve.app`: the FastAPI app (pages from Jinja2 templates, ``/api``).
- :mod:`medsim.serve.client`: how ``medsim search --server`` asks a running server.
"""
