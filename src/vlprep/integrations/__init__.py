"""Integrations with other frameworks, each behind its own extra and imported on use.

- :mod:`vlprep.integrations.ray`: Ray Data callables (``pip install 'vlprep[ray]'``).
- :func:`inspect_items`: ``vlprep-inspect --ray``, the CLI's items estimated by Ray workers
  (Ray itself is imported when it is called).
"""

from vlprep.integrations._inspect_cli import inspect_items

__all__ = ["inspect_items"]
