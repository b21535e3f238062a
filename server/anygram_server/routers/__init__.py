"""One APIRouter per resource: infini-gram's API and the page (``/``), indexes, queries,
documents, and operations (health, metrics)."""
