"""The optional C extensions (everything else is in pyproject.toml).

``migrate_eval/ingest/_fastrows.c`` (the ingest fast path) and ``migrate_eval/core/_chrfc.c``
(chrF's n-gram statistics) are compiled where a C compiler and the Python headers are
available; elsewhere the install goes on without them and the same values come from Python
(``migrate_eval/ingest/_builder.py``, ``migrate_eval/core/_chrf.py``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "migrate_eval.ingest._fastrows",
            ["migrate_eval/ingest/_fastrows.c"],
            optional=True,
        ),
        Extension(
            "migrate_eval.core._chrfc",
            ["migrate_eval/core/_chrfc.c"],
            optional=True,
        ),
    ]
)
