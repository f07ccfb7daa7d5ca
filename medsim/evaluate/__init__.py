"""The evaluate stage: the experiment tables of the LLM + deep-metric-learning method,
reproduced on whatever corpus the pipeline ran on, against baselines fitted on the same split.

One module per metrics file, each a pure function over arrays plus a ``build_*`` that reads
an :class:`~medsim.evaluate.context.EvalContext`:

- :mod:`~medsim.evaluate.classification`: ``metrics/table1.json`` (accuracy, macro-F1,
  macro OvR AUC with bootstrap CIs);
- :mod:`~medsim.evaluate.fewshot`: ``metrics/table2.json`` (N-way K-shot episodes on
  held-out classes);
- :mod:`~medsim.evaluate.crossdomain`: ``metrics/table3.json`` (train here, test on another
  corpus, overlapping documents removed);
- :mod:`~medsim.evaluate.retrieval`: ``metrics/retrieval.json`` (image <-> text mAP, recall@k,
  float and Hamming);
- :mod:`~medsim.evaluate.modality`: ``metrics/modality.json`` (CT/MR and plane);
- :mod:`~medsim.evaluate.textbench`: ``metrics/textbench.json`` (MTEB-style tasks before and
  after metric learning).

:mod:`~medsim.evaluate.stats` (confidence intervals), :mod:`~medsim.evaluate.baselines`,
:mod:`~medsim.evaluate.plots`, :mod:`~medsim.evaluate.report` and
:mod:`~medsim.evaluate.stage` (``run_evaluate``, the DVC stage) complete it.
"""

from medsim.evaluate.stage import BUILDERS, evaluate_tables, run_evaluate

__all__ = ["BUILDERS", "evaluate_tables", "run_evaluate"]
