"""Errors of components: finding, loading and swapping them, models' inputs and devices, guiders, adapters."""

from __future__ import annotations

from typing import Iterable, Sequence

from ..formatting import format_value
from .base import DiffblocksError, _did_you_mean, _listing


class ComponentError(DiffblocksError):
    """A component could not be found, created or loaded."""


class ComponentNotFoundError(ComponentError, KeyError):
    @classmethod
    def no_match(cls, pattern: str, available: Iterable[str], where: str = "") -> "ComponentNotFoundError":
        return cls(f"no component matches '{pattern}'{where}; registered: {_listing(available) or 'none'}")

    @classmethod
    def unknown_name(cls, name: str, valid: Iterable[str], owner: str = "the pipeline",
                     input_name: str | None = None) -> "ComponentNotFoundError":
        """``name`` is none of ``owner``'s components ``valid``; ``input_name``: the node input that gave it."""
        valid = list(valid)
        hint = _did_you_mean(name, valid)
        error = cls(f"{owner} has no component '{name}'{hint}; its components are: {_listing(valid) or 'none'}")
        error.input_name = input_name  # the input a node UI points at
        return error

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
    def not_in_bundle(cls, preset: str, name: str, source: str) -> "ComponentLoadError":
        """The bundle from ``source`` has no ``name`` (a checkpoint shared without its VAE), which ``preset`` needs."""
        loader = "LoadVAE" if name == "vae" else "a loader of it"
        error = cls(f"the components from {source or 'the wires'} have no {name}, and preset '{preset}' needs one: "
                    f"wire {loader} between them, or a {name} into its {name} input")
        error.input_name = "components"  # the input a node UI points at
        return error

    @classmethod
    def no_source(cls, name: str) -> "ComponentLoadError":
        return cls(
            f"component '{name}' has no repo to load from: set it with "
            f"pipe.get_component_spec('{name}') and spec.repo = ..., or pass an object to update_components({name}=...)"
        )


class NotInstantiableError(ComponentError, TypeError):
    @classmethod
    def auto_model(cls) -> "NotInstantiableError":
        return cls("AutoModel is not instantiated: use AutoModel.from_pretrained(path_or_repo, subfolder=...)")


class UnsupportedComponentError(ComponentError, ValueError):
    @classmethod
    def unknown_class(cls, library: str | None, class_name: str, supported: Iterable[str]) -> "UnsupportedComponentError":
        return cls(
            f"unsupported component class {library or '?'}.{class_name}; supported: {_listing(supported, limit=40)}"
        )


class ComponentTypeError(ComponentError, TypeError):
    """``update_components`` was given an object that is not what the component's spec expects; or a preset node
    was given another model family's components."""

    @classmethod
    def other_family(cls, preset: str, source: str, given: str, takes: str, instead: str | None) -> "ComponentTypeError":
        """A bundle of ``given``'s models (``source``: where they came from) for a preset of ``takes``'s."""
        hint = f"use preset:{instead}" if instead else f"load {takes} model, or pick a preset for {given} one"
        error = cls(f"the components from {source or 'the wires'} are {given} model's; preset '{preset}' takes "
                    f"{takes} model's: {hint}")
        error.input_name = "components"  # the input a node UI points at
        return error

    @classmethod
    def other_family_file(cls, what: str, source: str, given: str, takes: str, where: str,
                          input_name: str) -> "ComponentTypeError":
        """A ``what`` file (a ControlNet, a LoRA; ``source``) made for ``given``'s models where ``takes``'s go:
        ``where`` says what takes them ("preset 'sd15-controlnet' takes"), ``input_name`` the input to point at."""
        error = cls(f"the {what} {source} is {given} model's; {where} {takes} model's: load one made for {takes} "
                    "model")
        error.input_name = input_name  # the input a node UI points at
        return error

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


class LoaderArgumentsError(ComponentError, TypeError):
    """``load_components`` was given, under a component's name, something other than that loader's arguments."""

    @classmethod
    def not_a_dict(cls, name: str, value: object) -> "LoaderArgumentsError":
        return cls(f"load_components: {name}= takes a dict of the arguments for loading '{name}' (e.g. "
                   f"{name}={{'torch_dtype': torch.float16}}), got {format_value(value)} ({type(value).__name__}); "
                   f"nothing was loaded. To set the component itself, use update_components({name}=...)")


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
    def no_adapter(cls, what: str, model: str = "the UNet",
                   example: str = "'h94/IP-Adapter', subfolder='sdxl_models', weight_name='ip-adapter_sdxl.bin'"
                   ) -> "AdapterError":
        return cls(
            f"{what} but no IP-Adapter is loaded in {model}: call "
            f"pipe.loader.load_ip_adapter(repo, subfolder=..., weight_name=...) first (e.g. {example})"
        )

    @classmethod
    def no_controlnet(cls, what: str, model: str = "ControlNetModel") -> "AdapterError":
        return cls(
            f"{what} but no ControlNet is loaded: pipe.update_components("
            f"controlnet=ComponentSpec('controlnet', {model}, repo=...).load())"
        )

    @classmethod
    def no_redux(cls, missing: Iterable[str]) -> "AdapterError":
        return cls(
            f"redux_image was given but FLUX.1 Redux is not loaded (empty: {', '.join(missing)}): "
            "pipe.loader.load_redux('black-forest-labs/FLUX.1-Redux-dev') or a folder in that layout"
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
