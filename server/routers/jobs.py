"""``/api/jobs``: queue a workflow, list jobs, read one (status, outputs, timings, error), cancel one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from ...components.errors.nodes import WorkflowError
from ...components.errors.server import JobError
from ...nodes.values import artifact_refs
from ..models import CancelResponse, JobCreated, JobInfo, JobList, JobRequest, JobStatus, JobSummary
from ..queue import Job, new_job_id
from ..state import ServerState, server_state

router = APIRouter(prefix="/jobs", tags=["jobs"])
_ERRORS = {404: {"description": "no such job"}, 409: {"description": "the job already finished"}}


@router.post("", response_model=JobCreated, status_code=201, responses={422: {"description": "workflow problems"}},
             summary="Queue a workflow; answers with the job id at once")
async def submit(body: JobRequest, state: ServerState = Depends(server_state)) -> JobCreated:
    workflow = body.workflow.model_dump()
    errors = state.problems(workflow)
    if errors:
        raise WorkflowError(errors)
    state.artifacts.share(artifact_refs(workflow["nodes"]))  # with Redis: there for the worker that takes the job
    # announced before it can be claimed, so job.queued always comes before the worker's job.started
    job_id = new_job_id()
    state.bus.publish({"type": "job.queued", "job": job_id, "node": None, "priority": body.priority})
    try:
        state.queue.submit(workflow, body.priority, job_id=job_id)
    except Exception as err:  # the queue's storage failed: say so on the stream, then answer the error
        state.bus.publish({"type": "job.failed", "job": job_id, "node": None, "input": None,
                           "message": f"could not be queued: {type(err).__name__}: {err}"})
        raise
    return JobCreated(job=job_id)


@router.get("", response_model=JobList, summary="Jobs, newest first")
async def list_jobs(status: JobStatus | None = None, limit: int = Query(100, ge=1, le=1000),
                    state: ServerState = Depends(server_state)) -> JobList:
    return JobList(jobs=[summary(job) for job in state.queue.list(status, limit)])


@router.get("/{job_id}", response_model=JobInfo, responses=_ERRORS, summary="One job: status, outputs, timings, error")
async def get_job(job_id: str, state: ServerState = Depends(server_state)) -> JobInfo:
    job = state.queue.get(job_id)
    if job is None:
        raise JobError.unknown(job_id)
    return JobInfo(**summary(job).model_dump(by_alias=True), workflow=job.workflow,
                   outputs=job.result.get("outputs", {}), executed=job.result.get("executed", []),
                   cached=job.result.get("cached", []))


@router.delete("/{job_id}", response_model=CancelResponse, responses=_ERRORS,
               summary="Cancel a queued job, or interrupt a running one")
async def cancel_job(job_id: str, state: ServerState = Depends(server_state)) -> CancelResponse:
    if state.pool.interrupt(job_id):  # running here: stopped within the step it is in, before any query
        return CancelResponse(job=job_id, status="cancelling")
    if state.queue.cancel_queued(job_id):
        state.bus.publish({"type": "job.cancelled", "job": job_id, "node": None})
        return CancelResponse(job=job_id, status="cancelled")
    job = state.queue.get(job_id)
    if job is None:
        raise JobError.unknown(job_id)
    if job.status != "running":
        raise JobError.already(job_id, job.status)
    state.pool.cancel_running(job_id)
    return CancelResponse(job=job_id, status="cancelling")


def summary(job: Job) -> JobSummary:
    timings = {"created": job.created, "started": job.started, "finished": job.finished,
               "seconds": job.result.get("seconds"), "nodes": job.result.get("node_seconds", {})}
    return JobSummary(job=job.id, status=job.status, priority=job.priority, device=job.device, timings=timings,
                      error=job.error)
