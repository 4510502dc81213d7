"""One router per resource: ``nodes`` (catalog, validation), ``jobs``, ``artifacts`` (uploads too), ``system``,
``events`` (the WebSocket)."""
