"""Traffic routers: shift a model's live requests between its champion and canary versions.

``base`` holds the Router protocol and the Weights and Address values; one module per proxy
(``haproxy``, ``nginx``, ``envoy``); ``factory.router_for`` builds the one a policy names.
"""
