"""The routing table: which replicas serve which project/model/version, with what weights.

``table`` is the in-memory form the gateway routes with; ``schema`` and ``store`` keep it in the
control-plane database; ``rest`` serves it under ``/api/v1/routes``; ``client`` talks to that API;
``discovery`` keeps the replicas that announced themselves and ``announcer`` is a replica's side of
that. See docs/gateway.md.
"""
