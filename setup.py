"""The one compiled part of the package: the reasons' walk of an xgboost forest
(``scorer/model/_walk.c``, loaded with ctypes by ``scorer.model.tree_walk``). Everything else
is declared in ``pyproject.toml``."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "scorer.model._walk",
            sources=["scorer/model/_walk.c"],
            extra_compile_args=["-O3", "-std=c11"],
            py_limited_api=False,
        )
    ]
)
