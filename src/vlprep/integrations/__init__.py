"""Integrations with other frameworks, each behind its own extra and imported on use.

- :mod:`vlprep.integrations.ray`: Ray Data callables (``pip install 'vlprep[ray]'``).
"""
