"""The platform's exceptions. Third-party errors are translated at the boundary
(``raise PlatformError(...) from exc``) so callers never import a vendor's types.

    PlatformError
    ├── AgentError                 an agent file is invalid (names file and field)
    ├── CatalogError               unknown provider / model in the catalog data
    ├── CredentialsError           no key for the provider an agent needs
    ├── CarrierError               the phone side misbehaved
    │   └── StreamAuthError        a media stream without a valid token
    ├── ModelError                 the model side misbehaved
    │   ├── ModelConnectError      could not open a session (call start)
    │   └── ModelSessionLost       an open session ended and could not be resumed
    └── ToolError                  a tool failed (its message goes back to the model)
"""

from __future__ import annotations


class PlatformError(Exception):
    """Base of every error the platform raises on purpose."""


class AgentError(PlatformError):
    def __init__(self, file: str, field: str, message: str) -> None:
        self.file = file
        self.field = field
        self.message = message
        super().__init__(f"{file}: {field}: {message}")


class CatalogError(PlatformError):
    pass


class CredentialsError(PlatformError):
    pass


class CarrierError(PlatformError):
    pass


class StreamAuthError(CarrierError):
    pass


class ModelError(PlatformError):
    pass


class ModelConnectError(ModelError):
    pass


class ModelSessionLost(ModelError):
    pass


class ToolError(PlatformError):
    pass
