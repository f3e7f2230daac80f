"""Access control for the control plane: API tokens with roles, stored hashed, and the policy that
checks them on every call (``docs/security.md``)."""

from modelyard._lazy import lazy_exports

__all__ = ["TokenAuthorizer", "TokenInfo", "TokenStore"]

__getattr__, __dir__ = lazy_exports(
    __name__, {"TokenAuthorizer": "policy", "TokenInfo": "tokens", "TokenStore": "store"}
)
