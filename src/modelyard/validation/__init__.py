"""Validation of a candidate model version against a baseline: offline on a dataset
(``modelyard validate``) and online on the gateway's mirrored and canaried traffic."""
