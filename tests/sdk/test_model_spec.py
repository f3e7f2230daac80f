"""``@model``, :class:`ModelSpec`, :class:`ModelMetadata` and :class:`TensorSpec`."""

from __future__ import annotations

import numpy as np
import pytest

import modelyard
from modelyard import BatchSpec, ModelMetadata, ModelSpec, TensorSpec
from modelyard.sdk import HOOKS


class Plain:
    """An ordinary class: the decorator must leave it exactly as it is."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return inputs["x"] * self.scale


def test_model_returns_a_spec_around_the_untouched_class() -> None:
    before = dict(vars(Plain))
    spec = modelyard.model(name="plain", version="3", labels={"team": "a"})(Plain)
    assert isinstance(spec, ModelSpec)
    assert spec.cls is Plain
    assert dict(vars(Plain)) == before  # no attribute added, replaced or removed
    assert (spec.name, spec.version) == ("plain", "3")
    assert spec.metadata.labels == {"team": "a"}
    assert spec.metadata.platform == "modelyard_python"
    assert spec.batch_spec is None


def test_model_defaults_name_to_the_lower_cased_class_name_and_version_one() -> None:
    spec = modelyard.model()(Plain)
    assert (spec.name, spec.version) == ("plain", "1")
    assert modelyard.model(version=7)(Plain).version == "7"  # type: ignore[arg-type]


def test_model_keeps_the_declared_signature() -> None:
    x = TensorSpec("x", "FP32", [-1, 4])
    y = TensorSpec("y", "INT64", (-1,))
    spec = modelyard.model(inputs=[x], outputs=iter([y]))(Plain)
    assert spec.metadata.inputs == (x,)
    assert spec.metadata.outputs == (y,)


def test_create_passes_init_kwargs_and_gives_fresh_instances() -> None:
    spec = modelyard.model()(Plain).replace(init_kwargs={"scale": 2.0})
    first, second = spec.create(), spec.create()
    assert first is not second
    assert isinstance(first, Plain)
    assert first.scale == 2.0
    np.testing.assert_array_equal(first.predict({"x": np.array([1.0, 2.0])}), [2.0, 4.0])


def test_model_decorates_only_classes() -> None:
    def not_a_class() -> None: ...

    with pytest.raises(TypeError, match="@model decorates a class"):
        modelyard.model()(not_a_class)  # type: ignore[arg-type]


def test_missing_predict_is_a_type_error_naming_the_class() -> None:
    class NoPredict:
        def load(self) -> None: ...

    with pytest.raises(TypeError, match="model class NoPredict must define a predict method"):
        modelyard.model()(NoPredict)


def test_non_callable_predict_is_a_type_error_naming_the_class() -> None:
    class DataPredict:
        predict = 3

    with pytest.raises(TypeError, match="model class DataPredict must define a predict method"):
        ModelSpec.from_class(DataPredict)


@pytest.mark.parametrize("hook", [h for h in HOOKS if h != "predict"])
def test_non_callable_hook_is_a_type_error(hook: str) -> None:
    bad = type("BadHook", (Plain,), {hook: "not a method"})
    with pytest.raises(TypeError, match=rf"model class BadHook: hook '{hook}' must be a method"):
        modelyard.model()(bad)


def test_hooks_list() -> None:
    assert HOOKS == ("load", "preprocess", "predict", "postprocess", "warmup", "health", "metadata")


# -- metadata validation ---------------------------------------------------------------------


def test_duplicate_input_names_are_refused() -> None:
    x = TensorSpec("x", "FP32", [-1])
    with pytest.raises(ValueError, match=r"model 'dup': duplicate input names in \['x', 'x'\]"):
        modelyard.model(name="dup", inputs=[x, x])(Plain)


def test_duplicate_output_names_are_refused() -> None:
    y = TensorSpec("y", "FP32", [-1])
    with pytest.raises(ValueError, match="duplicate output names"):
        ModelMetadata(name="dup", outputs=(y, y))


def test_bad_datatype_is_refused_with_the_allowed_list() -> None:
    with pytest.raises(ValueError, match=r"TensorSpec 'x': datatype 'FLOAT' is not one of \[.*'FP32'"):
        TensorSpec("x", "FLOAT", [1])


@pytest.mark.parametrize("name", ["a/b", ""])
def test_model_name_must_be_non_empty_without_slash(name: str) -> None:
    with pytest.raises(ValueError, match="model name must be non-empty and contain no '/'"):
        ModelMetadata(name=name)


def test_model_name_with_slash_through_the_decorator() -> None:
    with pytest.raises(ValueError, match=r"contain no '/', got 'team/model'"):
        modelyard.model(name="team/model")(Plain)


@pytest.mark.parametrize("version", ["", "1/2"])
def test_model_version_must_be_non_empty_without_slash(version: str) -> None:
    with pytest.raises(ValueError, match="model version must be non-empty"):
        ModelMetadata(name="m", version=version)


def test_tensor_spec_validation() -> None:
    with pytest.raises(ValueError, match=r"TensorSpec\.name must be a non-empty string"):
        TensorSpec("", "FP32", [1])
    with pytest.raises(ValueError, match=r"TensorSpec 'x': shape dimensions must be >= -1, got \[-2, 3\]"):
        TensorSpec("x", "FP32", [-2, 3])
    spec = TensorSpec("x", "BYTES", [2, -1])
    assert spec.shape == (2, -1)
    assert spec.to_dict() == {"name": "x", "datatype": "BYTES", "shape": [2, -1]}


@pytest.mark.parametrize(
    ("declared", "shape", "ok"),
    [
        ((-1, 3), (5, 3), True),
        ((-1, 3), (0, 3), True),
        ((-1, 3), (5, 4), False),
        ((-1, 3), (5,), False),
        ((-1, 3), (5, 3, 1), False),
        ((2, -1), (2, 100), True),
        ((2, -1), (3, 100), False),
        ((), (), True),
        ((-1,), (), False),
    ],
)
def test_tensor_spec_accepts_shape(declared: tuple[int, ...], shape: tuple[int, ...], ok: bool) -> None:
    assert TensorSpec("x", "FP32", declared).accepts_shape(shape) is ok


# -- replace and batching precedence --------------------------------------------------------


@modelyard.model(name="scorer", version="1", labels={"team": "t"})
class Scorer:
    @modelyard.batch(max_batch_size=8, max_latency_ms=3)
    def predict(self, items: list[int]) -> list[int]:
        return items


def test_replace_name_and_version_changes_the_metadata_only() -> None:
    renamed = Scorer.replace(name="scorer-b", version="2")
    assert (renamed.name, renamed.version) == ("scorer-b", "2")
    assert renamed.metadata.labels == {"team": "t"}
    assert renamed.cls is Scorer.cls
    assert (Scorer.name, Scorer.version) == ("scorer", "1")  # the original is unchanged


def test_replace_with_none_keeps_name_and_version() -> None:
    same = Scorer.replace(name=None, version=None)
    assert (same.name, same.version) == ("scorer", "1")
    assert same == Scorer


def test_replace_other_fields() -> None:
    override = BatchSpec(max_batch_size=2, max_latency_ms=0)
    changed = Scorer.replace(batching=override, init_kwargs={"a": 1}, version="9")
    assert changed.batching is override
    assert dict(changed.init_kwargs) == {"a": 1}
    assert changed.version == "9"


def test_replace_validates_the_new_name() -> None:
    with pytest.raises(ValueError, match="contain no '/'"):
        Scorer.replace(name="a/b")


def test_batch_spec_precedence_override_then_decorator_then_none() -> None:
    assert Scorer.batch_spec == BatchSpec(max_batch_size=8, max_latency_ms=3)
    override = BatchSpec(max_batch_size=64, max_latency_ms=1, stack=True)
    assert Scorer.replace(batching=override).batch_spec is override
    assert modelyard.model()(Plain).batch_spec is None
    assert modelyard.model()(Plain).replace(batching=override).batch_spec is override


def test_from_class_defaults() -> None:
    spec = ModelSpec.from_class(Plain)
    assert spec.cls is Plain
    assert (spec.name, spec.version) == ("plain", "1")
    assert ModelSpec.from_class(Plain, name="p", version="4").version == "4"


def test_public_api_at_top_level() -> None:
    assert modelyard.model is modelyard.sdk.model
    assert modelyard.batch is modelyard.sdk.batch
    assert modelyard.__version__
