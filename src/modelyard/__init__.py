"""modelyard: package, serve, register, deploy, route and operate ML models.

The model author's API lives at the top level::

    import modelyard

    @modelyard.model(name="scorer", inputs=[modelyard.TensorSpec("x", "FP32", [-1, 4])])
    class Scorer:
        def load(self) -> None: ...
        @modelyard.batch(max_batch_size=64, max_latency_ms=10, stack=True)
        def predict(self, inputs): ...

The inference client is here too, imported on first use (so ``import modelyard`` does not load
httpx)::

    with modelyard.Client("http://gateway:8000") as client:
        outputs = client.predict("mail/spam", {"text": np.array(["win a prize"])})
"""

__version__ = "0.1.0.dev0"

from typing import TYPE_CHECKING, Any

from modelyard.sdk import BatchSpec, ModelMetadata, ModelSpec, TensorSpec, batch, model

if TYPE_CHECKING:
    from modelyard.client import AsyncClient, Client

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

_LAZY = frozenset({"AsyncClient", "Client"})


def __getattr__(name: str) -> Any:
    # The client needs httpx, which model servers and model authors never use: import it on demand.
    if name in _LAZY:
        from modelyard import client

        return getattr(client, name)
    raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
