"""Tests of model packages: build, verify, unpack, serve, isolate, Docker, MLflow import."""
