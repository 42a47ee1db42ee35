"""VoiceRAG: the operator's documents, indexed for the built-in `search_knowledge` tool.

`documents` reads files into passages, `index` keeps them in SQLite (FTS5 BM25 beside
embedding vectors) and ranks them, `tool` is the server-side tool a response calls.
"""
