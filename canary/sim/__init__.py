"""Simulated model versions and traffic, for tests, benchmarks and the local demo.

``model_server`` serves predictions and exports the Prometheus metrics canary policies query
(its behaviour is set from the command line: ``config``); ``loadgen`` sends a steady stream
of requests with a chosen mix of groups. Neither is imported by the controller itself.
"""
