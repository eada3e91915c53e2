"""Search: query → result, one module per stage, plus evaluation and the app (``search.ui``).

Modules (import what you need; this package imports nothing heavy by itself):

- :mod:`search.query` — validate, normalise, truncate and route a query (``prepare``, ``parse_pipeline``)
- :mod:`search.diacritics` — the query's diacritic level (``diacritic_level``); the restorer is
  :mod:`indexing.restorer`
- :mod:`search.retrieval` — the first stage: BM25, dense, both fused; the query-vector LRU
- :mod:`search.fusion` — ``rrf``, ``weighted_minmax``, ``fuse(name, lists)``
- :mod:`search.rerank` — the rerank window and the blend (:mod:`search.blend`), rerankers by name
- :mod:`search.pipeline` — ``Pipeline`` / ``PipelineConfig``: the stages composed
- :mod:`search.results` / :mod:`search.errors` — ``Hit``, ``SearchResult``, ``Note``; typed errors
- :mod:`search.service` — ``SearchService(index_name)`` for the app (follows ``CURRENT``, thread-safe)
- :mod:`search.metrics` / :mod:`search.eval` — pytrec_eval metrics; ``python -m search.eval DATASET_DIR``
- :mod:`search.compare` — overlap@k, Kendall's tau, display scores (the Compare tab)
- :mod:`search.ui` — the Gradio app, by tab (``python app.py``)
- ``python -m search query --index NAME "câu hỏi"`` — command-line search
"""
