"""anygram-server: ``anygram serve``, the HTTP query service and web page for anygram indexes.

Importing this package is cheap (the CLI imports it to add its flags); the app itself is
in :mod:`anygram_server.main`.
"""

__version__ = "0.1.0"
