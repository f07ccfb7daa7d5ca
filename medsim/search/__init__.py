"""Search the shared space: FAISS indexes, queries and explanations.

- :mod:`medsim.search.builders`: pure FAISS index builders (:func:`~.builders.build_index`,
  :func:`~.builders.build_binary_index`), one list-size rule (:func:`~.builders.nlist_for`)
  and :func:`~.builders.search`.
- :mod:`medsim.search.index`: the ``data/index/`` layout, its writer and its reader
  (:func:`~medsim.search.index.load_index`); :mod:`medsim.search.stage`: the DVC ``index`` stage.
- :mod:`medsim.search.query`: top-k across item collections for a text, an image or a stored item.
- :mod:`medsim.search.explain`: why two items are close.

Nothing heavy is imported here: ``medsim search --pmid`` must start in well under a second,
so torch and the encoders are imported only by the code paths that embed a new query.
"""
