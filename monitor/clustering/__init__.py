"""Clustering: which stories tell the same event, so that an event alerts once.

Owns: the story signature (``features``: folded shingles, concepts from the config's
alias groups, transliteration-folded names, normalised numbers, event and issuer terms),
the in-memory candidate index bounded by the time window (``index``), the join-or-new
decision (``decide``) and B-cubed scoring of a clustering against gold labels (``score``).
May import: ``monitor.errors``, ``monitor.matching`` (folding, the query parser that reads
alias groups) and the standard library. Pure: no database, network or scheduler code;
storage of signatures and alerting per cluster are the callers' business.
"""
