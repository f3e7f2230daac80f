"""Progressive rollouts: a candidate version takes traffic from its baseline step by step, gated on
the online analysis's evidence, and goes back by itself when a gate fails (docs/rollout.md).

``schema`` and ``store`` keep each rollout's state and history in the control-plane database;
``gates`` reads a step's evidence (pass, fail or inconclusive); ``plan`` says what traffic each
state wants; ``preflight`` why a rollout cannot start on its route; ``controller`` drives them all
from the database; ``rest`` and ``client`` are its REST edge and HTTP client.
"""
