"""Every exception diffblocks raises, with named constructors that word the messages.

A message names where the problem is (the dotted block path and block class, the file, the component),
what was expected and what was given, and the valid alternatives when there are any. Runtime failures
are raised ``from`` their cause; nothing here logs.
"""

from __future__ import annotations

import difflib
from typing import Iterable, Sequence

from .formatting import format_value


def _where(path: str | None, cls_name: str | None) -> str:
    if path and cls_name:
        return f"block '{path}' ({cls_name})"
    if path:
        return f"block '{path}'"
    return f"block {cls_name}" if cls_name else "pipeline"


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _listing(names: Iterable[str], limit: int = 12) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class DiffblocksError(Exception):
    """Base class of every diffblocks error."""


# --- block declarations and graphs -------------------------------------------------------------


class BlockDeclarationError(DiffblocksError, TypeError):
    """A block class declares its params, sub-blocks or triggers inconsistently."""

    @classmethod
    def duplicate_names(cls, block_cls: str, kind: str, names: Sequence[str]) -> "BlockDeclarationError":
        return cls(f"{block_cls} declares {kind} more than once: {', '.join(sorted(set(names)))}")

    @classmethod
    def mismatched_lengths(cls, block_cls: str, **lengths: int) -> "BlockDeclarationError":
        parts = ", ".join(f"{k}={v}" for k, v in lengths.items())
        return cls(f"{block_cls}: block_classes, block_names and block_trigger_inputs must have one entry per block; got {parts}")

    @classmethod
    def bad_triggers(cls, block_cls: str, branches: int, triggers: Sequence[str | None]) -> "BlockDeclarationError":
        return cls(f"{block_cls}: needs one trigger input per branch ({branches}), with at most one None (the "
                   f"default branch); got {list(triggers)}")

    @classmethod
    def bad_choices(cls, block_cls: str, choices: object) -> "BlockDeclarationError":
        return cls(f"{block_cls}: choices must map each branch name to a (block, trigger input or None) pair, "
                   f"got {format_value(choices)}")

    @classmethod
    def not_a_block(cls, owner: str, name: str, value: object) -> "BlockDeclarationError":
        return cls(
            f"{owner}: sub-block '{name}' must be a ModularPipelineBlocks class or instance, got {format_value(value)}"
        )


class PipelineValidationError(DiffblocksError, ValueError):
    """Every problem found in a block tree, raised together."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        head = "1 problem" if len(self.problems) == 1 else f"{len(self.problems)} problems"
        super().__init__(f"{head}:\n" + "\n".join(f"  - {p}" for p in self.problems))


# --- inputs at run time ------------------------------------------------------------------------


class MissingInputError(DiffblocksError, ValueError):
    @classmethod
    def required(cls, name: str, path: str | None, block_cls: str, description: str = "") -> "MissingInputError":
        desc = f" ({description})" if description else ""
        return cls(f"{_where(path, block_cls)} needs the required input '{name}'{desc}, but it was not given")

    @classmethod
    def one_of(cls, names: Sequence[str], path: str | None, block_cls: str) -> "MissingInputError":
        """None of ``names`` was given, and the block needs one of them (``prompt`` or ``prompt_embeds``)."""
        listed = " or ".join(f"'{n}'" for n in names)
        return cls(f"{_where(path, block_cls)} needs {listed}, but none of them was given")


class InputTypeError(DiffblocksError, TypeError):
    @classmethod
    def wrong_type(cls, name: str, path: str | None, block_cls: str, expected: str, value: object) -> "InputTypeError":
        return cls(
            f"{_where(path, block_cls)}: input '{name}' expects {expected}, got {format_value(value)}"
        )


class UnknownInputError(DiffblocksError, TypeError):
    @classmethod
    def unknown(cls, names: Sequence[str], valid: Iterable[str]) -> "UnknownInputError":
        valid = list(valid)
        hints = []
        for name in names:
            match = closest(name, valid)
            hints.append(f"'{name}'" + (f" (did you mean {match}?)" if match else ""))
        return cls(f"unknown input {', '.join(hints)}; this pipeline takes: {_listing(valid, limit=60)}")


class BlockExecutionError(DiffblocksError, RuntimeError):
    """An exception inside a block's ``__call__``, re-raised once with where it happened."""

    def __init__(self, message: str, path: str | None = None, block_cls: str | None = None):
        super().__init__(message)
        self.path = path
        self.block_cls = block_cls

    @classmethod
    def failed(cls, path: str, block_cls: str, inputs: dict, cause: BaseException) -> "BlockExecutionError":
        shown = ", ".join(f"{k}={format_value(v)}" for k, v in inputs.items()) or "no inputs"
        return cls(
            f"{_where(path, block_cls)} failed: {type(cause).__name__}: {cause}\n  inputs: {shown}",
            path=path,
            block_cls=block_cls,
        )


class OutputNotSetError(DiffblocksError, RuntimeError):
    @classmethod
    def missing(cls, name: str, path: str | None, block_cls: str) -> "OutputNotSetError":
        return cls(
            f"{_where(path, block_cls)} declares the output '{name}' but did not set it on its block state; "
            f"set block_state.{name} (None is fine) or remove it from intermediate_outputs"
        )


class OutputNotFoundError(DiffblocksError, KeyError):
    @classmethod
    def missing(cls, names: Sequence[str], available: Iterable[str]) -> "OutputNotFoundError":
        available = list(available)
        hints = []
        for name in names:
            match = closest(name, available)
            hints.append(f"'{name}'" + (f" (did you mean {match}?)" if match else ""))
        return cls(f"the pipeline state has no value {', '.join(hints)}; it holds: {_listing(available, limit=60)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


# --- components ----------------------------------------------------------------------------------


class ComponentError(DiffblocksError):
    """A component could not be found, created or loaded."""


class ComponentNotFoundError(ComponentError, KeyError):
    @classmethod
    def no_match(cls, pattern: str, available: Iterable[str], where: str = "") -> "ComponentNotFoundError":
        return cls(f"no component matches '{pattern}'{where}; registered: {_listing(available) or 'none'}")

    @classmethod
    def unknown_name(cls, name: str, valid: Iterable[str], owner: str = "the pipeline") -> "ComponentNotFoundError":
        valid = list(valid)
        match = closest(name, valid)
        hint = f" (did you mean {match}?)" if match else ""
        return cls(f"{owner} has no component '{name}'{hint}; its components are: {_listing(valid) or 'none'}")

    def __str__(self) -> str:
        return str(self.args[0])


class AmbiguousComponentError(ComponentError, ValueError):
    @classmethod
    def many(cls, pattern: str, matches: Iterable[str]) -> "AmbiguousComponentError":
        return cls(f"'{pattern}' matches more than one component: {_listing(matches)}; narrow it with collection= or load_id=")


class ComponentLoadError(ComponentError, RuntimeError):
    @classmethod
    def failed(cls, failures: dict[str, BaseException], loaded: Iterable[str]) -> "ComponentLoadError":
        lines = [f"  - {name}: {type(err).__name__}: {err}" for name, err in failures.items()]
        ok = _listing(loaded) or "none"
        return cls(f"{len(failures)} component(s) failed to load (loaded: {ok}):\n" + "\n".join(lines))

    @classmethod
    def no_source(cls, name: str) -> "ComponentLoadError":
        return cls(
            f"component '{name}' has no repo to load from: set it with "
            f"pipe.get_component_spec('{name}') and spec.repo = ..., or pass an object to update_components({name}=...)"
        )


class UnsupportedComponentError(ComponentError, ValueError):
    @classmethod
    def unknown_class(cls, library: str | None, class_name: str, supported: Iterable[str]) -> "UnsupportedComponentError":
        return cls(
            f"unsupported component class {library or '?'}.{class_name}; supported: {_listing(supported, limit=40)}"
        )


# --- files, weights and configs --------------------------------------------------------------------


class MissingFileError(DiffblocksError, FileNotFoundError):
    @classmethod
    def not_found(cls, looked_for: Sequence[str], what: str = "file") -> "MissingFileError":
        return cls(f"{what} not found; looked for: {', '.join(str(p) for p in looked_for)}")


class CorruptedFileError(DiffblocksError, OSError):
    @classmethod
    def unreadable(cls, path: str, cause: BaseException) -> "CorruptedFileError":
        return cls(f"cannot read weights file {path}: it is truncated or corrupted ({type(cause).__name__}: {cause})")

    @classmethod
    def bad_entry(cls, path: str, problem: str) -> "CorruptedFileError":
        """A safetensors header that contradicts itself or the file (``problem`` says how)."""
        return cls(f"cannot read weights file {path}: it is truncated or corrupted ({problem})")


class WeightsMismatchError(DiffblocksError, ValueError):
    @classmethod
    def keys(cls, model: str, missing: Sequence[str], unexpected: Sequence[str], limit: int = 5) -> "WeightsMismatchError":
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                shown = ", ".join(sorted(keys)[:limit])
                more = f", ... ({len(keys)} in all)" if len(keys) > limit else f" ({len(keys)})"
                parts.append(f"{label} keys: {shown}{more}")
        return cls(f"weights do not fit {model}: " + "; ".join(parts))

    @classmethod
    def shape(cls, model: str, key: str, expected: tuple, got: tuple) -> "WeightsMismatchError":
        return cls(f"weights do not fit {model}: '{key}' expects shape {tuple(expected)}, the file has {tuple(got)}")


class ConfigError(DiffblocksError, ValueError):
    @classmethod
    def bad_value(cls, owner: str, key: str, expected: str, value: object) -> "ConfigError":
        return cls(f"{owner}: config '{key}' expects {expected}, got {format_value(value)}")

    @classmethod
    def unreadable(cls, path: str, cause: BaseException) -> "ConfigError":
        return cls(f"cannot read config {path}: {type(cause).__name__}: {cause}")

    @classmethod
    def unsaveable_blocks(cls, classes: Sequence[str], reason: str) -> "ConfigError":
        return cls(
            f"cannot save the custom blocks {', '.join(classes)}: {reason}. Custom block classes are saved from "
            f"their source, so they must be defined at the top level of a .py file (import them from it)"
        )

    @classmethod
    def custom_schedule(cls, scheduler: str, timesteps: bool, sigmas: bool) -> "ConfigError":
        """Custom ``timesteps`` and ``sigmas`` both given, or one the scheduler's ``set_timesteps`` does not take."""
        if timesteps and sigmas:
            return cls("give either custom timesteps or custom sigmas, not both")
        return cls(f"{scheduler} does not take custom {'timesteps' if timesteps else 'sigmas'}")

    @classmethod
    def batch_repeat(cls, rows: int, batch: int) -> "ConfigError":
        return cls(f"cannot repeat a batch of {rows} to {batch}: give 1 row or a number of rows that divides {batch}")

    @classmethod
    def embedding_width(cls, expected: int, num_ids: int, pooled_dim: int, given: int) -> "ConfigError":
        """SDXL's UNet added embedding does not fit its time ids and pooled text embeddings."""
        return cls(
            f"the UNet's added embedding takes {expected} features but {num_ids} time ids and pooled embeddings of "
            f"width {pooled_dim} give {given}; check requires_aesthetics_score and text_encoder_2"
        )

    @classmethod
    def unsaveable_component(cls, name: str, type_name: str, reason: str) -> "ConfigError":
        return cls(
            f"cannot save component '{name}' ({type_name}): {reason}; give it as a ComponentSpec with a repo "
            f"(pipe.update_components({name}=ComponentSpec('{name}', ..., repo=...)))"
        )


class RemoteCodeError(DiffblocksError, PermissionError):
    @classmethod
    def not_trusted(cls, repo: str, filename: str) -> "RemoteCodeError":
        return cls(
            f"{repo} defines its blocks in custom code ({filename}); read it, then load with "
            f"trust_remote_code=True to run it"
        )

    @classmethod
    def untrusted_refs(cls, config_file: str, refs: Sequence[str]) -> "RemoteCodeError":
        return cls(
            f"{config_file} names block classes that are not diffblocks' own: {', '.join(refs)}. Code from a repo "
            f"(its block.py, or any module named there) runs only with trust_remote_code=True: read it, then load "
            f"with trust_remote_code=True to run it"
        )

    @classmethod
    def not_a_block(cls, config_file: str, ref: str) -> "RemoteCodeError":
        return cls(
            f"{config_file}: '{ref}' does not name a ModularPipelineBlocks subclass; a block tree names only block "
            f"classes (diffblocks' own as 'module:Class', the repo's block.py classes as 'block:Class')"
        )


class GuiderError(DiffblocksError, ValueError):
    """A guider was configured or called inconsistently."""

    @classmethod
    def not_in_model(cls, guider: str, key: str, cause: BaseException) -> "GuiderError":
        return cls(f"{guider} {key}: {cause}")


class AdapterError(DiffblocksError, ValueError):
    """An adapter (IP-Adapter, ControlNet) checkpoint or setup does not fit."""

    @classmethod
    def missing_image_encoder(cls, reason: str) -> "AdapterError":
        return cls(
            f"IP-Adapter: no image encoder ({reason}). Load one with "
            "pipe.loader.load_ip_adapter(repo, subfolder=..., weight_name=..., image_encoder_folder='<folder of a "
            "CLIPVisionModelWithProjection, e.g. models/image_encoder>'), or give it: "
            "pipe.update_components(image_encoder=CLIPVisionModelWithProjection.from_pretrained(repo, subfolder=...)); "
            "or pass precomputed ip_adapter_embeds instead of ip_adapter_image"
        )

    @classmethod
    def no_adapter(cls, what: str) -> "AdapterError":
        return cls(
            f"{what} but no IP-Adapter is loaded in the UNet: call "
            "pipe.loader.load_ip_adapter(repo, subfolder=..., weight_name=...) first "
            "(e.g. 'h94/IP-Adapter', subfolder='sdxl_models', weight_name='ip-adapter_sdxl.bin')"
        )

    @classmethod
    def no_controlnet(cls, what: str) -> "AdapterError":
        return cls(
            f"{what} but no ControlNet is loaded: pipe.update_components("
            "controlnet=ComponentSpec('controlnet', ControlNetModel, repo=...).load())"
        )

    @classmethod
    def wrong_count(cls, owner: str, noun: str, given: int, loaded: int, hint: str = "") -> "AdapterError":
        """``owner`` got ``given`` ``noun`` (scales, embeddings, ...) where ``loaded`` IP-Adapters need one each."""
        adapters = "IP-Adapter" if loaded == 1 else "IP-Adapters"
        return cls(f"{owner}: {given} {noun} for {loaded} loaded {adapters}" + (f"; {hint}" if hint else ""))

    @classmethod
    def bad_embeds(cls, name: str, problem: str) -> "AdapterError":
        """Precomputed IP-Adapter embeddings ``name`` that cannot work (``problem``: what is wrong, what would do)."""
        return cls(f"{name}: {problem}")

    @classmethod
    def bad_layout(cls, path: str, expected: Iterable[str], found: Iterable[str]) -> "AdapterError":
        return cls(
            f"{path} is not an adapter checkpoint of the expected layout: expected keys {_listing(expected)}, "
            f"found {_listing(found)}"
        )


class UsageError(DiffblocksError, ValueError):
    """A command-line argument that cannot work (the CLI prints it as one line)."""


class InputValueError(InputTypeError, ValueError):
    """An input of an accepted type whose value cannot work: outside its declared range, not finite, of the
    wrong shape, or at odds with another input. A ValueError, and an InputTypeError so that every handler
    of located input errors passes it through unchanged."""

    @classmethod
    def invalid(cls, name: str, path: str | None, block_cls: str, problem: str, value: object) -> "InputValueError":
        """``problem`` says what the value must be ("must be > 0", "must be finite (it holds 3 NaN)")."""
        return cls(f"{_where(path, block_cls)}: input '{name}' {problem}, got {format_value(value)}")

    @classmethod
    def conflict(cls, names: Sequence[str], path: str | None, block_cls: str, problem: str) -> "InputValueError":
        """Several inputs that each pass but do not fit together; ``problem`` gives their values and the rule."""
        listed = ", ".join(f"'{n}'" for n in names[:-1]) + f" and '{names[-1]}'" if len(names) > 1 else f"'{names[0]}'"
        return cls(f"{_where(path, block_cls)}: inputs {listed} do not fit together: {problem}")

    @classmethod
    def unknown_names(cls, name: str, path: str | None, block_cls: str, unknown: Sequence[str],
                      available: Iterable[str]) -> "InputValueError":
        """Input ``name`` lists names (of values) the block does not hold; ``available`` are the ones it does."""
        available = list(available)
        hints = []
        for item in unknown:
            match = closest(item, available)
            hints.append(f"'{item}'" + (f" (did you mean {match}?)" if match else ""))
        return cls(f"{_where(path, block_cls)}: input '{name}' names {', '.join(hints)}, not a value the block "
                   f"holds; it holds: {_listing(available, limit=40)}")


class ComponentTypeError(ComponentError, TypeError):
    """``update_components`` was given an object that is not what the component's spec expects."""

    @classmethod
    def wrong_type(cls, refused: Sequence[tuple[str, str, object]]) -> "ComponentTypeError":
        """``refused``: (component name, expected type, given value) for each refused value."""
        lines = [
            f"component '{name}' expects {expected}, got {format_value(value)} ({type(value).__name__})"
            for name, expected, value in refused
        ]
        return cls(
            "update_components: " + "; ".join(lines) + ". Nothing was changed; pass an object of the expected "
            "type, a ComponentSpec, or None to unset the component"
        )


class FlagError(UsageError):
    """A ``diffblocks`` command-line flag whose value cannot work; the message starts with the flag."""

    @classmethod
    def bad_value(cls, flag: str, expected: str, value: object) -> "FlagError":
        return cls(f"{flag} must be {expected}, got {format_value(value)}")

    @classmethod
    def needs(cls, flag: str, other: str, why: str = "") -> "FlagError":
        return cls(f"{flag} needs {other}" + (f": {why}" if why else ""))

    @classmethod
    def unsupported(cls, flag: str, preset: str, supported: Iterable[str]) -> "FlagError":
        return cls(f"{flag} works with the {', '.join(supported)} workflows, not preset '{preset}'")

    @classmethod
    def preset_unavailable(cls, preset: str, module: str, cause: BaseException) -> "FlagError":
        return cls(f"preset '{preset}' needs {module}, which cannot be imported: {cause}")

    @classmethod
    def unknown_choice(cls, what: str, value: str, choices: Iterable[str], flag: str | None = None) -> "FlagError":
        choices = list(choices)
        match = closest(value, choices)
        hint = f" (did you mean {match}?)" if match else ""
        return cls(f"{flag + ': ' if flag else ''}unknown {what} '{value}'{hint}; {what}s: {', '.join(choices)}")

    @classmethod
    def not_an_input(cls, flag: str, preset: str, hint: str = "") -> "FlagError":
        return cls(f"preset '{preset}' takes no {flag}" + (f"; {hint}" if hint else ""))

    @classmethod
    def unusable(cls, flag: str, value: str, problem: str) -> "FlagError":
        """``problem`` says what is wrong with the file, folder, repo or device ``value`` names."""
        return cls(f"{flag} {value}: {problem}")

    @classmethod
    def failed(cls, flag: str, value: str, cause: BaseException) -> "FlagError":
        """Loading what ``flag`` names raised ``cause``; its first line is kept."""
        text = str(cause).strip()
        return cls.unusable(flag, value, text.splitlines()[0] if text else type(cause).__name__)


class HubUnreachableError(MissingFileError):
    """A Hub repo is needed, the Hub cannot be reached (or HF_HUB_OFFLINE is set) and the repo is not cached."""

    @classmethod
    def not_cached(cls, repo: str, looked_for: str, endpoint: str, cache_dir: str, offline: bool,
                   cause: BaseException | None = None) -> "HubUnreachableError":
        if offline:
            why = "HF_HUB_OFFLINE is set"
            fix = "unset HF_HUB_OFFLINE to download it"
        else:
            detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
            why = f"the Hub ({endpoint}) cannot be reached{detail}"
            fix = ("connect to the network, or download it once while online and then set HF_HUB_OFFLINE=1 to use "
                   "the cached copy")
        return cls(
            f"{why} and the repo '{repo}' is not in the local cache ({cache_dir}; looked for {looked_for}); {fix}, "
            "or pass the path of a local folder instead of a Hub id"
        )


class LoopInputMissingError(MissingInputError):
    """A loop sub-block's required input is absent from the loop's shared block state when the sub-block runs."""

    @classmethod
    def not_set(cls, name: str, path: str | None, block_cls: str, description: str = "") -> "LoopInputMissingError":
        desc = f" ({description})" if description else ""
        return cls(f"{_where(path, block_cls)} needs the required input '{name}'{desc}, but it was not given and "
                   "no earlier sub-block of the loop set it on the block state")


class UnknownComponentClassError(ComponentLoadError):
    """No config file of a component's folder names the class that loads it."""

    @classmethod
    def in_folder(cls, name: str, where: str, looked_for: Sequence[str]) -> "UnknownComponentClassError":
        return cls(f"cannot tell which class component '{name}' is: no config in {where} names one (looked for "
                   f"{', '.join(looked_for)}); give the spec a type_hint, or load it with its own class")


class ModelInputError(DiffblocksError, ValueError):
    """A model's forward was given inputs that do not fit the model (a shape, a count, a missing tensor)."""

    @classmethod
    def bad_shape(cls, owner: str, name: str, expected: str, shape: Sequence[int]) -> "ModelInputError":
        return cls(f"{owner}: {name} must be {expected}, got shape {tuple(shape)}")

    @classmethod
    def missing(cls, owner: str, name: str, why: str) -> "ModelInputError":
        return cls(f"{owner}: {why}; pass {name}")

    @classmethod
    def wrong_count(cls, owner: str, name: str, given: int, expected: int, unit: str) -> "ModelInputError":
        return cls(f"{owner}: {name} has {given} tensors, but the model has {expected} {unit} (one tensor each)")


class DeviceError(DiffblocksError, ValueError):
    """Tensors, generators or models on devices that cannot work together."""

    @classmethod
    def generator(cls, target: str, generator_device: str) -> "DeviceError":
        return cls(f"cannot draw a {target} tensor from a generator on {generator_device}: give a generator on "
                   f"{target} or on cpu")


class DuplicateKeyError(DiffblocksError, KeyError):
    """``InsertableDict.insert`` was given a key the dict already holds."""

    @classmethod
    def already_present(cls, key: object, position: int) -> "DuplicateKeyError":
        return cls(f"'{key}' is already present at position {position}; assign to replace it, or pop it first")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
