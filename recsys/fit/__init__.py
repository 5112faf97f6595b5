"""Training, the one way: typed settings, tables, the two-tower trainer, the stages of ``recsys train``.

Settings are parsed from YAML at the edge (:mod:`recsys.fit.parsing`) into the frozen dataclasses of
:mod:`recsys.fit.settings`; every stage receives the section it needs. ``Recommender.fit``
(:mod:`recsys.fit.components`), ``recsys train`` (:mod:`recsys.pipeline.train`) and the benchmarks
train through the same functions here.
"""
