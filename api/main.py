"""ASGI entry point: `uvicorn api.main:app`."""

from fastapi import FastAPI

app = FastAPI(title="ShopPulse API")


@app.get("/health")
def health() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}
