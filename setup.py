"""The one part of the build pyproject.toml cannot say: the C extension.

``roles._fastloop`` (roles/_fastloop.c): the Map-Resolver worker's receive loop for
the common request (issue 11).  Optional: without a compiler the install goes on
and workers use the Python fast path (scripts/setup.sh installs gcc and the Python
headers; under CI=true tests/unit/test_fastloop.py fails if it was not built).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("roles._fastloop", ["roles/_fastloop.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off", "-std=gnu11"])])
