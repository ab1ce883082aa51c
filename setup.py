"""The compiled forwarding path (media/_fastpath.c); everything else is in pyproject.toml.

Optional: where it cannot be built, the install goes on and the server forwards in Python
(media.fanout).
"""

from setuptools import Extension, setup  # type: ignore[import-untyped]

setup(
    ext_modules=[
        Extension(
            "media._fastpath",
            sources=["media/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall"],
            optional=True,
        )
    ]
)
