"""Search the shared space: FAISS indexes, queries and explanations.

- :mod:`medsim.search.index`: pure index builders (:func:`~medsim.search.index.build_index`,
  :func:`~medsim.search.index.build_binary_index`, :func:`~medsim.search.index.search`), the
  ``data/index/`` layout and its reader (:func:`~medsim.search.index.load_index`), and
  :func:`~medsim.search.index.run_index`, the DVC ``index`` stage.
- :mod:`medsim.search.query`: top-k across item kinds for a text, an image or a stored item.
- :mod:`medsim.search.explain`: why two items are close.

Nothing heavy is imported here: ``medsim search --pmid`` must start in well under a second,
so torch and the encoders are imported only by the code paths that embed a new query.
"""
