"""The built-in corpus: six domains built on the fly from the running Python and generated math.

  corpus.py     the domains, their splits, manifest and on-disk cache (`load_documents`)
  stdlib.py     documents from the standard library (code, code with prose, docstrings, pydoc)
  extras.py     optional installed sources, used only when asked for
  mathgen.py    generated problems in three forms (math_numeric.py, math_algebra.py, math_word.py)
  cache.py      where built documents are cached between processes

A run's domains come from here or from a mixture file (`mixlab/data/sources.py` chooses).
"""
