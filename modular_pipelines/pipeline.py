"""ModularPipeline: blocks bound to components, run on a PipelineState.

Blocks receive the pipeline itself as ``components``: ``components.unet`` is a loaded component and
``components.force_zeros_for_empty_prompt`` a pipeline-level config value.
"""

from __future__ import annotations

import threading
from typing import Any

from .block import ModularPipelineBlocks, run_block
from .call import CallComponents, RunningCalls, check_given_inputs, check_ready, check_required_inputs
from .components_mixin import ComponentsMixin
from ..components.errors import OutputNotFoundError, UnknownInputError
from .state import PipelineState

# inputs every pipeline accepts even when no block declares them
ALWAYS_ACCEPTED = frozenset({"generator", "output_type"})


class ModularPipeline(ComponentsMixin):
    """An executable pipeline: ``pipe(state=None, output=None, **inputs)``.

    Args:
        blocks: the block (usually a SequentialPipelineBlocks) to run.
        pretrained_model_name_or_path: a modular or diffusers-format repo (local or Hub) whose
            component specs and config values are read now; weights load in ``load_components``.
        components_manager: shares and offloads components across pipelines.
        collection: the manager's collection for this pipeline's components.
        revision: the repo's revision (branch, tag or commit) to read the specs and config from.
    """

    def __init__(self, blocks: ModularPipelineBlocks, pretrained_model_name_or_path=None,
                 components_manager=None, collection: str | None = None, revision: str | None = None):
        self.blocks = blocks
        self._progress_bar_config: dict[str, Any] = {}
        self._running = RunningCalls()
        self._init_components(pretrained_model_name_or_path, components_manager, collection, revision)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, trust_remote_code: bool = False,
                        components_manager=None, collection: str | None = None, revision: str | None = None):
        """A pipeline from a modular repo (its blocks, custom code when trusted, specs and config) or a
        standard diffusers-format repo (the family's AUTO_BLOCKS). Weights load in ``load_components``.

        Raises:
            RemoteCodeError: the repo ships ``block.py`` and ``trust_remote_code`` is False.
            MissingFileError: neither ``modular_model_index.json`` nor ``model_index.json`` is there.
        """
        from .hub import load_blocks

        blocks = load_blocks(pretrained_model_name_or_path, trust_remote_code=trust_remote_code, revision=revision)
        return cls(blocks, pretrained_model_name_or_path, components_manager=components_manager, collection=collection,
                   revision=revision)

    def save_pretrained(self, save_directory, push_to_hub: bool = False, repo_id: str | None = None, **hub_kwargs):
        """Write a modular repo (specs, config values, block tree, custom block source); optionally upload it."""
        from pathlib import Path

        from .hub import push_folder, save_pipeline

        save_pipeline(self, save_directory)
        if push_to_hub:
            push_folder(save_directory, repo_id or Path(save_directory).name, **hub_kwargs)

    def push_to_hub(self, repo_id: str, **hub_kwargs):
        """Save to a temporary folder and upload it to ``repo_id``."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, push_to_hub=True, repo_id=repo_id, **hub_kwargs)

    @property
    def input_names(self) -> list[str]:
        return self.blocks.input_names

    def _guider_knobs(self, inputs: dict[str, Any], state: PipelineState) -> dict[str, Any]:
        """Take the per-call guider settings out of ``inputs`` (``guidance_scale=9``: a config key of the
        pipeline's guider that no block declares); refuse names that are neither those nor block inputs."""
        valid = set(self.blocks.input_names) | ALWAYS_ACCEPTED
        guider = self._components.get("guider")
        knobs = {k for k in getattr(guider, "config", {}) if not k.startswith("_")} - valid
        overrides = {k: inputs.pop(k) for k in list(inputs) if k in knobs}
        unknown = [k for k in inputs if k not in valid and k not in state.values]
        if unknown:
            raise UnknownInputError.unknown(unknown, sorted(valid | knobs))
        return overrides

    def __call__(self, state: PipelineState | None = None, output: str | list[str] | None = None,
                 interrupt_event: threading.Event | None = None, **inputs: Any):
        """Run the blocks.

        Calls are independent: several threads may call one pipeline (or pipelines sharing components) at
        once; each call has its own scheduler and guider state, and the state it is given is not changed.

        Args:
            state: continue from an earlier run's state (a copy of it: its values are kept, ``inputs``
                override, and ``state`` itself is left as it was).
            output: None returns the final PipelineState; a name returns that value; a list returns a dict.
            interrupt_event: a ``threading.Event`` that stops this call alone at its next loop step when set
                (``pipe.interrupt()`` stops every running call).
            **inputs: the blocks' inputs (``prompt``, ``generator``, ``num_inference_steps``, ...), and settings of
                the pipeline's guider for this call only (``guidance_scale=9``), unless a block declares that name.

        Raises:
            UnknownInputError: an input no block declares (with the closest valid name).
            ConfigError: a guider setting the guider refuses.
            InputTypeError: a given value no declaration of its name accepts (before any block runs).
            MissingInputError: a required input of a block that would run is not given (before any block runs).
            BlockExecutionError: from the block that failed, or one that cannot run with the components loaded
                (an adapter's image given with no adapter loaded; before any block runs).
        """
        state = PipelineState() if state is None else state.copy()
        guider_settings = self._guider_knobs(inputs, state)
        check_given_inputs(self.blocks, inputs)
        check_required_inputs(self.blocks, {**state.values, **inputs})
        with self._running.track(interrupt_event or threading.Event()) as stop:
            components = CallComponents(self, stop, {"guider": guider_settings} if guider_settings else None)
            check_ready(self.blocks, components, {**state.values, **inputs})
            for name, value in inputs.items():
                state.set(name, value)
            run_block(self.blocks, components, state, "")
        return self._select_output(state, output)

    @property
    def loader(self):
        """Adapter loading for this pipeline: ``pipe.loader.load_ip_adapter(...)``, ``set_ip_adapter_scale``,
        ``unload_ip_adapter``."""
        from .loader import PipelineLoader

        return PipelineLoader(self)

    # --- offload, as diffusers pipelines spell it -------------------------------------------------------
    def enable_model_cpu_offload(self, device: str | int = "cuda", memory_reserve_margin: str | int = "3GB",
                                 memory_probe=None) -> None:
        """Keep the models on CPU and move each to ``device`` right before it runs; others leave the device
        only when it would not fit (the ComponentsManager's auto offload; a private manager when the pipeline
        has none). Arguments as :meth:`ComponentsManager.enable_auto_cpu_offload`."""
        if self.components_manager is None:
            from ..components.manager import ComponentsManager

            self.components_manager = ComponentsManager()
            for name, component in self._components.items():
                if component is not None:
                    self._set_component(name, component)
        self.components_manager.enable_auto_cpu_offload(device, memory_reserve_margin, memory_probe)

    def enable_sequential_cpu_offload(self, device: str | int = "cuda") -> None:
        """Keep every model's weights on CPU and stream each submodule's to ``device`` for its forward
        (accelerate's ``cpu_offload``): the least memory, the slowest."""
        from accelerate import cpu_offload

        for _, module in self._modules():
            cpu_offload(module, execution_device=device)

    def enable_guidance_parallel(self, group=None) -> None:
        """Run the guider's branches (cond / uncond / perturbed) on different ranks of a torch.distributed
        process group, each rank the model forward of its own branches, gathered before the guider combines
        them (:mod:`diffblocks.distributed.guidance`). Every rank must make the same calls with the same
        inputs, one call at a time; ``pipe.guidance_parallel = None`` turns it off.

        Args:
            group: the process group (None: the default group).

        Raises:
            DistributedError: torch.distributed is not initialised.
        """
        from ..distributed.guidance import enable_guidance_parallel

        enable_guidance_parallel(self, group)

    # --- progress and interruption, read by loops ------------------------------------------------------
    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Options for the tqdm progress bar of loops (``disable=True`` turns it off)."""
        self._progress_bar_config.update(kwargs)

    def progress_bar(self, iterable=None, total: int | None = None):
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, **self._progress_bar_config)

    def interrupt(self) -> None:
        """Stop every running call at its next loop step (safe from another thread); later calls run."""
        self._running.stop_all()

    @staticmethod
    def _select_output(state: PipelineState, output):
        if output is None:
            return state
        names = [output] if isinstance(output, str) else list(output)
        missing = [n for n in names if n not in state.values]
        if missing:
            raise OutputNotFoundError.missing(missing, state.values)
        if isinstance(output, str):
            return state.values[output]
        return {n: state.values[n] for n in names}

    def __repr__(self) -> str:
        from .render import render_pipeline

        return render_pipeline(self)
