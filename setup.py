"""The optional C extension of the ingest fast path (everything else is in pyproject.toml).

``migrate_eval/ingest/_fastrows.c`` is compiled where a C compiler and the Python headers
are available; elsewhere the install goes on without it and ingest uses the same fast path
in Python (``migrate_eval/ingest/_builder.py``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "migrate_eval.ingest._fastrows",
            ["migrate_eval/ingest/_fastrows.c"],
            optional=True,
        )
    ]
)
