"""The one compiled part of the package, ``scorer._native``: the C of the reasons' per-row
loops (``scorer/model/_walk.c``, ``scorer/model/_reasons.c``, ``scorer/postgres/_append_field.c``,
loaded with ctypes by ``scorer.compiled``). Everything else is declared in ``pyproject.toml``."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "scorer._native",
            sources=[
                "scorer/model/_walk.c",
                "scorer/model/_reasons.c",
                "scorer/postgres/_append_field.c",
            ],
            extra_compile_args=["-O3", "-std=c11"],
            py_limited_api=False,
        )
    ]
)
