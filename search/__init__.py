"""Search: embedders, diacritics, fusion, the pipeline, evaluation and the app-facing service.

Modules (import what you need; this package imports nothing heavy by itself):

- :mod:`search.embedders` — ``load_embedder("e5-small" | "bge-m3[:PATH]" | "st:PATH")``
- :mod:`search.diacritics` — ``diacritic_level(query)``, ``DiacriticRestorer``
- :mod:`search.fusion` — ``rrf``, ``weighted_minmax``, ``fuse(name, lists)``
- :mod:`search.pipeline` — ``Pipeline``, ``SearchResult``, ``Hit``, ``QueryError``
- :mod:`search.service` — ``SearchService(index_name)`` for the app (follows ``CURRENT``, thread-safe)
- :mod:`search.metrics` / :mod:`search.eval` — pytrec_eval metrics; ``python -m search.eval DATASET_DIR``
- ``python -m search query --index NAME "câu hỏi"`` — command-line search
"""
