"""A stand-in for the node engine: a few node types, events like the real Executor's, a cache keyed by inputs,
and a node that waits until its job is cancelled (the events tell a test when it is running)."""

from __future__ import annotations

import json
import threading

from PIL import Image

from diffblocks.components.errors.nodes import Interrupted, NodeRunError, WorkflowError

NUMBER = {"schema": {"type": "integer"}, "required": False, "socket": None}
CATALOG = {
    "Number": {"inputs": {"value": NUMBER}, "outputs": {"value": {"socket": "integer"}}, "category": "math",
               "description": "a number"},
    "Add": {"inputs": {"a": NUMBER, "b": NUMBER}, "outputs": {"value": {"socket": "integer"}}, "category": "math",
            "description": "a + b"},
    "Image": {"inputs": {"value": NUMBER, "steps": NUMBER}, "outputs": {"image": {"socket": "image"},
              "images": {"socket": "image"}, "latents": {"socket": "tensor"}}, "category": "images",
              "description": "a gray image, with progress and previews"},
    "Wait": {"inputs": {"value": NUMBER}, "outputs": {"value": {"socket": "integer"}}, "category": "test",
             "description": "runs until its job is cancelled"},
    "Fail": {"inputs": {"value": NUMBER}, "outputs": {}, "category": "test", "description": "always fails"},
}


def validate(workflow) -> list[dict]:
    nodes = workflow.get("nodes") if isinstance(workflow, dict) else None
    if not isinstance(nodes, dict):
        return [{"node": None, "input": None, "message": "a workflow is {\"nodes\": {...}}"}]
    problems = []
    for node_id, node in nodes.items():
        if node.get("type") not in CATALOG:
            problems.append({"node": node_id, "input": None, "message": f"unknown node type '{node.get('type')}'"})
            continue
        for name, value in node.get("inputs", {}).items():
            if isinstance(value, dict) and value.get("node") not in nodes:
                problems.append({"node": node_id, "input": name, "message": f"no node '{value.get('node')}'"})
    return problems


class FakeExecutor:
    def __init__(self, device: str, manager):
        self.device, self.components_manager = device, manager
        self.cache: dict[str, dict] = {}
        self.runs = 0

    def free(self) -> None:
        self.cache.clear()

    def cache_info(self) -> dict[str, int]:
        return {"entries": len(self.cache), "bytes": 100 * len(self.cache), "budget": 10_000}

    def run(self, workflow, on_event=None, stop_event=None, job=None, targets=None):
        emit, stop = on_event or (lambda event: None), stop_event or threading.Event()
        problems = validate(workflow)
        if problems:
            raise WorkflowError(problems)
        self.runs += 1
        order = list(workflow["nodes"])
        emit({"type": "job.started", "job": job, "node": None, "nodes": order})
        results, executed, cached = {}, [], []
        for node_id in order:
            node = workflow["nodes"][node_id]
            values = {name: results[v["node"]][v["output"]] if isinstance(v, dict) else v
                      for name, v in node.get("inputs", {}).items()}
            key = json.dumps([node["type"], repr(sorted(values.items()))])
            if key in self.cache:
                results[node_id] = self.cache[key]
                cached.append(node_id)
                emit({"type": "node.cached", "job": job, "node": node_id})
                continue
            emit({"type": "node.started", "job": job, "node": node_id})
            results[node_id] = self._compute(node_id, node["type"], values, job, emit, stop)
            self.cache[key] = results[node_id]
            executed.append(node_id)
            emit({"type": "node.finished", "job": job, "node": node_id, "seconds": 0.001, "outputs": results[node_id]})
        emit({"type": "job.finished", "job": job, "node": None, "executed": executed, "cached": cached,
              "seconds": 0.01})
        return results

    def _compute(self, node_id, kind, values, job, emit, stop):
        if kind == "Number":
            return {"value": values.get("value", 0)}
        if kind == "Add":
            return {"value": values.get("a", 0) + values.get("b", 0)}
        if kind == "Image":
            import torch

            steps = values.get("steps", 2)
            for step in range(1, steps + 1):
                emit({"type": "node.progress", "job": job, "node": node_id, "step": step, "total": steps})
                emit({"type": "node.preview", "job": job, "node": node_id, "step": step,
                      "image": Image.new("RGB", (4, 4), (step, 0, 0))})
            image = Image.new("RGB", (6, 5), (values.get("value", 0), 100, 200))
            return {"image": image, "images": [image, image], "latents": torch.zeros(1, 4, 3, 2)}
        if kind == "Wait":
            stop.wait()
            emit({"type": "job.cancelled", "job": job, "node": node_id})
            raise Interrupted(node_id)
        error = NodeRunError(node_id, "Fail failed: on purpose", "value")
        emit({"type": "job.failed", "job": job, **error.error_json()})
        raise error


class FakeEngine:
    """The ``NodeEngine`` seam, faked."""

    def __init__(self):
        self.executors: list[FakeExecutor] = []

    def catalog(self):
        return CATALOG

    def validate(self, workflow):
        return validate(workflow)

    def components_manager(self):
        from diffblocks.components import ComponentsManager

        return ComponentsManager()

    def executor(self, device, manager, artifacts, cache_bytes, allow_remote_code, previews=True, preview_interval=0.0,
                 model_dirs=()):
        executor = FakeExecutor(device, manager)
        executor.preview_interval = preview_interval
        self.executors.append(executor)
        return executor
