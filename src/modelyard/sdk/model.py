"""``@model``: turn a plain class into a servable :class:`ModelSpec`.

A model is one class. Every hook is optional except ``predict``; sync and async hooks both work
(the server runs sync hooks in a worker thread so they never block the event loop):

    load(self) -> None                                     read weights; runs once, in a thread
    preprocess(self, inputs: dict[str, ndarray]) -> item   per request, outside the batch
    predict(self, item) -> result                          or list[item] -> list[result] with @batch
    postprocess(self, result) -> dict[str, ndarray] | ndarray    per request, outside the batch
    warmup(self) -> None                                   after load; readiness waits for it
    health(self) -> bool                                   polled in the background; readiness follows it
    metadata(self) -> ModelMetadata                        refine the signature once loaded

The decorator never touches the class: it returns a spec that the server reads.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelyard.sdk.batch import BatchedMethod, BatchSpec
from modelyard.sdk.signature import ModelMetadata, TensorSpec

__all__ = ["HOOKS", "ModelSpec", "model"]

HOOKS = ("load", "preprocess", "predict", "postprocess", "warmup", "health", "metadata")


@dataclass(frozen=True)
class ModelSpec:
    """Everything the server needs to instantiate and serve one model version.

    ``batching`` overrides the ``@batch`` declared on ``predict`` (used by zero-code runtimes and
    the command line); ``init_kwargs`` are passed to the class when the server instantiates it.
    """

    cls: type
    metadata: ModelMetadata
    batching: BatchSpec | None = None
    init_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        predict = inspect.getattr_static(self.cls, "predict", None)
        if predict is None or not (callable(predict) or isinstance(predict, BatchedMethod)):
            raise TypeError(f"model class {self.cls.__name__} must define a predict method")
        for hook in HOOKS:
            value = inspect.getattr_static(self.cls, hook, None)
            if value is not None and not (callable(value) or isinstance(value, BatchedMethod)):
                raise TypeError(f"model class {self.cls.__name__}: hook '{hook}' must be a method")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def batch_spec(self) -> BatchSpec | None:
        """The batching in force: the override, else the ``@batch`` on predict, else None."""
        if self.batching is not None:
            return self.batching
        predict = inspect.getattr_static(self.cls, "predict")
        return predict.spec if isinstance(predict, BatchedMethod) else None

    def create(self) -> object:
        """A fresh instance of the model class (load has not run yet)."""
        return self.cls(**self.init_kwargs)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with fields changed; ``name``/``version`` change the metadata."""
        meta_changes = {k: changes.pop(k) for k in ("name", "version") if changes.get(k) is not None}
        changes.pop("name", None)
        changes.pop("version", None)
        if meta_changes:
            changes["metadata"] = dataclasses.replace(self.metadata, **meta_changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_class(cls, model_cls: type, **metadata: Any) -> ModelSpec:
        """A spec for an undecorated class; the name defaults to the class name, lower-cased."""
        metadata.setdefault("name", model_cls.__name__.lower())
        return cls(cls=model_cls, metadata=ModelMetadata(**metadata))


def model(
    name: str | None = None,
    *,
    version: str = "1",
    inputs: Iterable[TensorSpec] = (),
    outputs: Iterable[TensorSpec] = (),
    labels: Mapping[str, str] | None = None,
    platform: str = "modelyard_python",
) -> Callable[[type], ModelSpec]:
    """Declare a model class and its metadata.

    Example::

        @modelyard.model(name="iris", version="2",
                         inputs=[TensorSpec("x", "FP32", [-1, 4])],
                         outputs=[TensorSpec("label", "INT64", [-1])])
        class Iris:
            def load(self) -> None: ...
            def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...
    """

    def decorate(model_cls: type) -> ModelSpec:
        if not inspect.isclass(model_cls):
            raise TypeError(f"@model decorates a class, got {model_cls!r}")
        meta = ModelMetadata(
            name=name or model_cls.__name__.lower(),
            version=str(version),
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            platform=platform,
            labels=dict(labels or {}),
        )
        return ModelSpec(cls=model_cls, metadata=meta)

    return decorate
