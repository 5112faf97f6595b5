"""Build hook for the compiled pieces used when serving: the GBDT tree walk (recsys/models/rankers/_walk.c)
and the point-in-time event counts of the ranking features (recsys/features/_counts.c).

Everything else is in pyproject.toml. The extensions are optional: where no C compiler is available
the install still succeeds, ``CompiledForest`` falls back to scikit-learn's walk (its ``engine``
attribute says which walk is in use) and ``EventIndex`` counts with NumPy (``recsys.features.event_index.COUNTS_ENGINE``).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("recsys.models.rankers._walk", ["recsys/models/rankers/_walk.c"],
                             extra_compile_args=["-O3"], optional=True),
                   Extension("recsys.features._counts", ["recsys/features/_counts.c"],
                             extra_compile_args=["-O3"], optional=True)])
