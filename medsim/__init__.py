"""medsim: semantic similarity over the medical literature.

A DVC pipeline (fetch -> extract -> embed -> train -> evaluate) whose stage cores live in
this package as pure functions over one batch; ``stages/`` holds the thin scripts.
"""

__version__ = "0.1.0"
