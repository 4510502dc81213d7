"""``POST /api/uploads`` (an image, stored as PNG) and ``GET /api/artifacts/{id}`` (content-addressed files)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, UploadFile
from fastapi.responses import FileResponse

from ...components.errors.nodes import ArtifactError
from ..models import UploadResponse
from ..state import ServerState, server_state

router = APIRouter(tags=["artifacts"])


@router.post("/uploads", response_model=UploadResponse, status_code=201,
             responses={413: {"description": "too many bytes or pixels"}, 415: {"description": "not an image"}},
             summary="Upload an image (multipart field 'file'); it is decoded, checked and stored as PNG")
async def upload(file: UploadFile = File(...), state: ServerState = Depends(server_state)) -> UploadResponse:
    data = await file.read()
    name = f"the upload '{file.filename}'" if file.filename else "the upload"
    # decoding, not the name or the declared type, decides what an upload is; re-encoding keeps only pixels
    image = state.artifacts.check_image_bytes(data, what=name)
    return UploadResponse(artifact=state.artifacts.put_image(image), width=image.width, height=image.height)


@router.get("/artifacts/{artifact_id}", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}}, 400: {"description": "malformed id"},
                       404: {"description": "no such artifact"}},
            summary="An artifact's bytes, by its sha256")
async def get_artifact(artifact_id: str, state: ServerState = Depends(server_state)) -> FileResponse:
    path = state.artifacts.path(artifact_id)  # ArtifactError (400) unless 64 lowercase hex characters
    if not path.is_file():
        raise _missing(artifact_id)
    return FileResponse(path, media_type=state.artifacts.media_type(artifact_id),
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


def _missing(artifact_id: str) -> ArtifactError:
    error = ArtifactError.missing(artifact_id)
    error.kind = "missing"
    return error
