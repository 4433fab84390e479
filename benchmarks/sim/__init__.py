"""Simulated rollouts and the peer methods canary is compared with.

The detection benchmark needs the same rollouts judged by every method, so the pieces are
split by what they are: ``rollout`` holds a rollout's cumulative counts and reads and writes
the public replay format, ``simulate`` draws rollouts from scenario parameters,
``scenarios`` names the rollouts the benchmark runs, and one module per method judges them
(``flagger``, ``kayenta``, ``naive``, ``oracle``, ``canary_method``). ``report`` turns the
outcomes into the tables.
"""
