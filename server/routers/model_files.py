"""``GET /api/models[/{kind}[/{name}]]``: the files in the model folders the server was given (``--models-dir``), by
kind, read from disk at each request (a file copied in shows up without a restart), and what one of them is."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ...components.errors.server import RequestError
from ...nodes.model_files import KINDS, ModelFolders
from ..models import ModelFile
from ..state import ServerState, server_state

router = APIRouter(prefix="/models", tags=["models"])


# plain functions, run in the thread pool: they read folders
@router.get("", response_model=dict[str, list[str]],
            summary="Every kind of model (checkpoints, loras, vae, ...) with the names a loader takes")
def all_models(state: ServerState = Depends(server_state)) -> dict[str, list[str]]:
    return ModelFolders(state.settings.model_dirs).listing()


@router.get("/{kind}", response_model=list[str], responses={404: {"description": "no such kind of model"}},
            summary="The names of one kind of model, as the loaders that take it take them")
def models_of(kind: str, state: ServerState = Depends(server_state)) -> list[str]:
    if kind not in KINDS:
        raise RequestError.unknown_model_kind(kind, KINDS)
    return ModelFolders(state.settings.model_dirs).names(kind)


@router.get("/{kind}/{name:path}", response_model=ModelFile, responses={404: {"description": "no such kind or model"}},
            summary="One model file or folder: its size and its family (which preset runs it)")
def model_file(kind: str, name: str, state: ServerState = Depends(server_state)) -> ModelFile:
    if kind not in KINDS:
        raise RequestError.unknown_model_kind(kind, KINDS)
    folders = ModelFolders(state.settings.model_dirs)
    info = folders.describe(kind, name)
    if info is None:
        raise RequestError.unknown_model(kind, name, folders.names(kind))
    return ModelFile(**info)
