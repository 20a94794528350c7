"""The corpus's valid choices, in a module that imports nothing.

The corpus owns them: :meth:`priming.corpus.Corpus.search_captions` and
:meth:`~priming.corpus.Corpus.knn` validate against them, and the pool and the command
line list them (building a command line must stay cheap, so they live apart from the
storage modules).
"""

__all__ = ["SEARCH_MODES", "KNN_METHODS"]

#: caption search modes: the name's tokens as a phrase, or every token anywhere
SEARCH_MODES = ("phrase", "all_tokens")
#: vector search methods: a scan of every embedding, or the IVF-PQ index
KNN_METHODS = ("exact", "ivfpq")
