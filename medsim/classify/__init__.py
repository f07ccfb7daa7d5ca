"""``medsim classify``: Table 1's proposed rule on new documents, figures and PMIDs, with
calibrated probabilities and the evidence behind each label (:mod:`.rule`, :mod:`.calibrate`,
:mod:`.classifier`; :mod:`.load` reads a built project, :mod:`.inputs` turns inputs into
vectors, :mod:`.cli` is the command).

Nothing is imported here: `medsim search` builds the same parser and must not pay for scipy.
"""
