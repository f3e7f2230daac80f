"""modelyard: package, serve, register, deploy, route and operate ML models.

The model author's API lives at the top level::

    import modelyard

    @modelyard.model(name="scorer", inputs=[modelyard.TensorSpec("x", "FP32", [-1, 4])])
    class Scorer:
        def load(self) -> None: ...
        @modelyard.batch(max_batch_size=64, max_latency_ms=10, stack=True)
        def predict(self, inputs): ...
"""

__version__ = "0.1.0.dev0"

from modelyard.sdk import BatchSpec, ModelMetadata, ModelSpec, TensorSpec, batch, model

__all__ = ["BatchSpec", "ModelMetadata", "ModelSpec", "TensorSpec", "__version__", "batch", "model"]
