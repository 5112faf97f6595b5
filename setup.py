"""Build hook for the one compiled piece: the GBDT tree walk used when serving (recsys/models/rankers/_walk.c).

Everything else is in pyproject.toml. The extension is optional: where no C compiler is available
the install still succeeds and ``CompiledForest`` falls back to scikit-learn's walk (its ``engine``
attribute says which walk is in use).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("recsys.models.rankers._walk", ["recsys/models/rankers/_walk.c"],
                             extra_compile_args=["-O3"], optional=True)])
