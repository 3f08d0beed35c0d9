"""Connectors: one module per remote system behind the small protocol in :mod:`.base`.

* :mod:`.base`: the :class:`~refsync.connectors.base.Connector` protocol and the values crossing it.
* :mod:`.cursor`: the incremental (modstamp, id) cursor.
* :mod:`.errors`: vendor errors → actions, as a table.
* :mod:`.http`: sessions with timeouts, retries, pacing, classification.
* :mod:`.usage`: API call counting and token buckets fed by usage headers.
* :mod:`.registry`: connector classes by name, from the ``refsync.connectors`` entry points.
* :mod:`.file`: CSV / JSON Lines files.
"""

from __future__ import annotations

__all__: list[str] = []
