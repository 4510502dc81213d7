"""Pydantic models of every request and response, so the OpenAPI document describes the whole API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class NodeInputSpec(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    schema_: dict[str, Any] = Field(alias="schema", description="JSON schema of the value a widget may hold")
    required: bool
    socket: str | None = Field(description="the socket type a wire must carry; null for a plain JSON widget")


class NodeOutputSpec(BaseModel):
    socket: str


class NodeSpec(BaseModel):
    inputs: dict[str, NodeInputSpec]
    outputs: dict[str, NodeOutputSpec]
    category: str
    description: str


class WorkflowNode(BaseModel):
    """One node: its type and its inputs, each a JSON value or a wire ``{"node": id, "output": name}``."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(examples=["LoadComponents"])
    inputs: dict[str, Any] = Field(default_factory=dict, examples=[{"repo": "embedded"}])


class Workflow(BaseModel):
    """A workflow: ``{"nodes": {id: node}}`` (other keys, such as a page's layout, are kept as they are)."""

    model_config = ConfigDict(extra="allow")
    nodes: dict[str, WorkflowNode]


class Problem(BaseModel):
    """One problem, placed on a node and input where there is one."""

    node: str | None = None
    input: str | None = None
    message: str


class ValidateRequest(BaseModel):
    workflow: Workflow


class ValidateResponse(BaseModel):
    ok: bool
    errors: list[Problem]


class JobRequest(BaseModel):
    workflow: Workflow
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first; equal priorities run in order")


class JobCreated(BaseModel):
    job: str
    status: JobStatus = "queued"


class JobProblem(Problem):
    errors: list[Problem] | None = Field(None, description="every workflow problem, when the workflow was refused")


class JobTimings(BaseModel):
    created: float = Field(description="when it was queued (seconds since the epoch)")
    started: float | None = None
    finished: float | None = None
    seconds: float | None = Field(None, description="the engine's run time")
    nodes: dict[str, float | None] = Field(default_factory=dict, description="seconds per node that ran")


class JobSummary(BaseModel):
    job: str
    status: JobStatus
    priority: int
    device: str | None = None
    timings: JobTimings
    error: JobProblem | None = None


class JobInfo(JobSummary):
    """A job with its workflow and, once done, its outputs: JSON values as they are, images as
    ``{"artifact": sha256}``, tensors as ``{"socket": "tensor", "dtype", "shape"}``."""

    workflow: dict[str, Any]
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    executed: list[str] = Field(default_factory=list, description="nodes that ran")
    cached: list[str] = Field(default_factory=list, description="nodes whose outputs came from the cache")


class JobList(BaseModel):
    jobs: list[JobSummary]


class CancelResponse(BaseModel):
    job: str
    status: Literal["cancelled", "cancelling"] = Field(
        description="cancelled: it was queued; cancelling: it was running and stops within one step")


class UploadResponse(BaseModel):
    artifact: str = Field(description="sha256 of the stored PNG")
    width: int
    height: int


class DeviceInfo(BaseModel):
    device: str
    job: str | None = Field(description="the job running there, null when idle")


class CudaMemory(BaseModel):
    allocated: int
    reserved: int


class MemoryInfo(BaseModel):
    rss_bytes: int
    cuda: dict[str, CudaMemory] = Field(default_factory=dict)


class ComponentInfo(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: str
    class_name: str = Field(alias="class")
    collections: list[str]


class CacheInfo(BaseModel):
    entries: int
    bytes: int
    budget: int


class QueueInfo(BaseModel):
    queued: int
    running: int


class SystemInfo(BaseModel):
    devices: list[DeviceInfo]
    memory: MemoryInfo
    components: list[ComponentInfo]
    cache: CacheInfo
    queue: QueueInfo
    clients: int = Field(description="WebSocket clients listening to /api/events")
    allow_remote_code: bool
    workers_error: str | None = Field(None, description="why no worker runs (a device this machine lacks, say); "
                                                        "null while they start or run")


class FreeResponse(BaseModel):
    removed_components: list[str]
    cache: CacheInfo
    rss_before: int
    rss_after: int


class ModelFile(BaseModel):
    """One entry of a model folder (``--models-dir``)."""

    kind: str = Field(examples=["checkpoints"])
    name: str = Field(description="the name a loader input takes", examples=["sd15/dreamshaper_8.safetensors"])
    bytes: int | None = Field(description="the file's size; null for a model folder")
    family: Literal["sd15", "sd2", "sdxl", "flux"] | None = Field(
        description="the family of a checkpoint (read off its tensor names), of a ControlNet or LoRA file (off its "
                    "cross-attention width) or of an embedding (off its vectors' width): the models it goes with (sd2 "
                    "runs sd15's presets); of a diffusers model folder, by the pipeline its model_index.json names "
                    "(flux too); null for other kinds, and for a file whose family cannot be told (see problem; a "
                    "LoRA of the text encoders alone has neither)")
    problem: str | None = Field(description="why a checkpoint, ControlNet or embedding file has no family (a LoRA, a "
                                            "damaged file); else null")
