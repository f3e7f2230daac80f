"""modelyard: package, serve, register, deploy, route and operate ML models.

The model author's API lives at the top level::

    import modelyard

    @modelyard.model(name="scorer", inputs=[modelyard.TensorSpec("x", "FP32", [-1, 4])])
    class Scorer:
        def load(self) -> None: ...
        @modelyard.batch(max_batch_size=64, max_latency_ms=10, stack=True)
        def predict(self, inputs): ...

The inference client is here too. Every name is imported on first use, so ``import modelyard`` loads
neither the SDK nor httpx::

    with modelyard.Client("http://gateway:8000") as client:
        outputs = client.predict("mail/spam", {"text": np.array(["win a prize"])})
"""

__version__ = "0.1.0.dev0"

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.client import AsyncClient, Client
    from modelyard.sdk import BatchSpec, ModelMetadata, ModelSpec, TensorSpec, batch, model

__all__ = [
    "AsyncClient",
    "BatchSpec",
    "Client",
    "ModelMetadata",
    "ModelSpec",
    "TensorSpec",
    "__version__",
    "batch",
    "model",
]

# Everything loads on first use: ``import modelyard.gateway`` must not load the model author's SDK
# (or numpy), and ``import modelyard`` must not load httpx for the client.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AsyncClient": "client",
        "Client": "client",
        "BatchSpec": "sdk",
        "ModelMetadata": "sdk",
        "ModelSpec": "sdk",
        "TensorSpec": "sdk",
        "batch": "sdk",
        "model": "sdk",
    },
)
