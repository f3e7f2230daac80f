"""Why a rollout cannot start: checks of the deployment against its route, before anything moves.

A rollout that cannot read the evidence its gates need would only fail later (or, worse, pass on
the wrong evidence), so ``deploy apply`` and ``deploy retry`` refuse it with a reason that says
what to change:

- a weight step needs a baseline whose weight can be split;
- a mirror step counts the candidate's answers compared with the baseline's, so the route must log
  answers (``log_payload`` ``hash`` or ``full``);
- ``min_agreement`` compares the answers' values, so the route must log them in ``full``: a hash
  matches only identical bytes, and an Open Inference Protocol answer names its ``model_version``,
  so two versions' answers never hash alike and a good candidate would fail as surely as a bad one.

A route that does not exist yet is created by the apply with the default, ``hash``.
"""

from __future__ import annotations

from modelyard.deploy.spec import Deployment
from modelyard.rollout.plan import baseline_share, rollout_of
from modelyard.routing.table import ModelRoute

__all__ = ["refusal"]

# A new route's log setting (``ModelRoute``'s default): what a route the apply creates will log.
_NEW_ROUTE = ModelRoute("", "").log_payload


def refusal(deployment: Deployment, route: ModelRoute | None) -> str | None:
    """Why the deployment's rollout cannot run on ``route`` (None: not routed yet), or None."""
    spec = rollout_of(deployment)
    if any(step.weight for step in spec.steps) and baseline_share(deployment) < 2:
        return f"baseline {spec.baseline}'s weight is too small to split; give it 100"
    name = f"{deployment.project}/{deployment.model}"
    how = f"`modelyard route options {name} --log-payload full`"
    payload = route.log_payload if route is not None else _NEW_ROUTE
    if spec.gates.min_agreement is not None and payload != "full":
        where = f"the route {name} has log_payload '{payload}'"
        if route is None:
            where = f"{name} has no route yet, and a new route gets log_payload '{payload}'"
            how = f"apply the file without the rollout first, then {how}"
        return (
            f"{where}, but min_agreement compares the answers' values, which needs log_payload "
            "'full' (a hash matches only identical bytes, and each version's answer names its "
            f"model_version): {how}"
        )
    if any(step.mirror for step in spec.steps) and payload == "none":
        return f"{name} logs no answers (log_payload 'none'): set it to 'full' or 'hash' ({how})"
    return None
