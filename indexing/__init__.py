"""Indexing: normalization, ingestion, Whoosh BM25, Qdrant vectors, embedding cache, index generations.

Submodules are imported on demand (``from indexing.bm25 import BM25Index``); importing the package itself
stays cheap. Command line: ``python -m indexing --help``.
"""
