"""Matching: which stories a watchlist wants, and why.

Owns: text folding (``textnorm``), light stemming (``stemming``), the query language
(``query``), the compiled matcher with explanations (``matcher``).
Pure: imports nothing but ``monitor.errors`` and the standard library (plus
pyahocorasick); no database, network or scheduler code.
"""
