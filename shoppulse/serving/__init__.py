"""Read side of the serving tables: plain query functions the REST API (and anything else) calls.

Nothing here imports FastAPI: the API in ``api/`` is a thin shell that validates HTTP parameters,
calls these functions with a pooled psycopg connection and serializes what they return.
"""
