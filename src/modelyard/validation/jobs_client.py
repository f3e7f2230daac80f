"""``JobsClient``: a control plane's validation setups and jobs over HTTP, with the same methods
as :class:`~modelyard.validation.job_store.JobStore` (what ``modelyard registry validation`` uses
with a control URL)."""

from __future__ import annotations

from modelyard.validation.setup import JobView, SetupRequest, ValidationSetup
from modelyard.web.api_client import ApiClient

__all__ = ["JobsClient"]


class JobsClient(ApiClient):
    """Calls ``/api/v1/models/{name}/validation...``; errors come back as the domain errors raised."""

    def __init__(self, url: str, *, timeout: float = 30.0, user: str = "", token: str | None = None) -> None:
        # The user header is only read by a control plane running without access control.
        headers = {"x-modelyard-user": user} if user else {}
        super().__init__(url, prefix="/api/v1", timeout=timeout, headers=headers, token=token)

    def put_setup(self, name: str, request: SetupRequest, user: str = "") -> ValidationSetup:
        body = request.model_dump(mode="json")
        return ValidationSetup.model_validate(
            self._send("PUT", f"/models/{name}/validation", json=body).json()
        )

    def get_setup(self, name: str) -> ValidationSetup:
        return ValidationSetup.model_validate(self._send("GET", f"/models/{name}/validation").json())

    def clear_setup(self, name: str) -> None:
        self._send("DELETE", f"/models/{name}/validation")

    def list_jobs(self, name: str, limit: int = 50) -> list[JobView]:
        found = self._send("GET", f"/models/{name}/validation/jobs", params={"limit": limit}).json()
        return [JobView.model_validate(job) for job in found["jobs"]]

    def get_job(self, job_id: int) -> JobView:
        return JobView.model_validate(self._send("GET", f"/validation/jobs/{job_id}").json())

    def run_now(self, name: str, version: int, user: str = "") -> JobView:
        path = f"/models/{name}/versions/{version}/validation/run"
        return JobView.model_validate(self._send("POST", path).json())
