# Thin shim so `python setup.py develop` works; all metadata lives in pyproject.toml.
from setuptools import setup

setup()
