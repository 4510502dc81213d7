"""``GET /api/nodes`` (the catalog) and ``POST /api/validate``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from ..models import NodeSpec, ValidateRequest, ValidateResponse
from ..state import ServerState, server_state

router = APIRouter(tags=["nodes"])


@router.get("/nodes", response_model=dict[str, NodeSpec], summary="The node types and their sockets")
async def list_nodes(state: ServerState = Depends(server_state)) -> Response:
    # the catalog is fixed while the server runs: serialise it once
    return Response(state.catalog_body, media_type="application/json")  # serialised once, at start


@router.post("/validate", response_model=ValidateResponse, summary="Every problem of a workflow, without running it")
async def validate(body: ValidateRequest, state: ServerState = Depends(server_state)) -> ValidateResponse:
    errors = state.problems(body.workflow.model_dump())
    return ValidateResponse(ok=not errors, errors=errors)
