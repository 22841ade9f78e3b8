"""FastAPI service: a thin HTTP shell over the serving queries in `shoppulse`."""
