"""Every exception diffblocks raises, with named constructors that word the messages.

A message names where the problem is (the dotted block path and block class, the file, the component),
what was expected and what was given, and the valid alternatives when there are any. Runtime failures
are raised ``from`` their cause; nothing here logs.

The classes are grouped by what goes wrong: ``base`` (and usage), ``blocks``, ``components``, ``files``; import
them from here."""

from .base import closest, DiffblocksError, UsageError, FlagError  # noqa: F401
from .blocks import BlockDeclarationError, PipelineValidationError, MissingInputError, InputTypeError, UnknownInputError, BlockExecutionError, OutputNotSetError, OutputNotFoundError, InputValueError, LoopInputMissingError, DuplicateKeyError  # noqa: F401
from .components import ComponentError, ComponentNotFoundError, AmbiguousComponentError, ComponentLoadError, UnsupportedComponentError, NotInstantiableError, ComponentTypeError, LoaderArgumentsError, UnknownComponentClassError, ModelInputError, DeviceError, GuiderError, AdapterError  # noqa: F401
from .nodes import WorkflowError, NodeRunError, Interrupted, ArtifactError  # noqa: F401
from .files import ReadOnlyConfigError, MissingFileError, CorruptedFileError, UnsafeFileError, WeightsMismatchError, ConfigError, RemoteCodeError, HubUnreachableError  # noqa: F401
from .server import ServerError, RequestError, JobError, ServerSetupError  # noqa: F401
from .distributed import BatchError, BatchItemError, DistributedError  # noqa: F401
from .adapters import LoraError, TextualInversionError  # noqa: F401
from .prompts import PromptSyntaxError  # noqa: F401

__all__ = [
    "ArtifactError",
    "Interrupted",
    "NodeRunError",
    "WorkflowError",
    "AdapterError",
    "AmbiguousComponentError",
    "BlockDeclarationError",
    "BlockExecutionError",
    "ComponentError",
    "ComponentLoadError",
    "ComponentNotFoundError",
    "ComponentTypeError",
    "LoaderArgumentsError",
    "ConfigError",
    "CorruptedFileError",
    "UnsafeFileError",
    "DeviceError",
    "DiffblocksError",
    "DuplicateKeyError",
    "FlagError",
    "GuiderError",
    "HubUnreachableError",
    "InputTypeError",
    "InputValueError",
    "LoopInputMissingError",
    "MissingFileError",
    "MissingInputError",
    "ModelInputError",
    "NotInstantiableError",
    "OutputNotFoundError",
    "OutputNotSetError",
    "PipelineValidationError",
    "ReadOnlyConfigError",
    "RemoteCodeError",
    "UnknownComponentClassError",
    "UnknownInputError",
    "UnsupportedComponentError",
    "UsageError",
    "WeightsMismatchError",
    "closest",
]
