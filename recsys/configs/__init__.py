"""Parsing configuration files into typed dataclasses (the schema itself lives in :mod:`recsys.config`).

YAML is read at the edge only (:func:`recsys.configs.parsing.parse`); every stage receives a frozen
dataclass, so a typo in a key or a value fails before any work starts, with the key's path, the file,
the allowed keys or values and the closest match.
"""
