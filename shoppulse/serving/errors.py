"""Errors the query layer raises; the API maps them to HTTP statuses."""

from __future__ import annotations


class ServingError(Exception):
    """Base class of every error the serving layer raises on purpose."""


class InvalidParameterError(ServingError):
    """A request parameter is well-formed but not acceptable (HTTP 422, naming the parameter)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


class DataUnavailableError(ServingError):
    """The serving tables cannot answer right now, e.g. no FX rate exists for a currency (HTTP 503)."""
