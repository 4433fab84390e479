"""The local demo: a real rollout on this machine in one command (``canary demo``).

It trains real scikit-learn models on a synthetic credit data set, registers them in a real
MLflow server, serves them with a small scoring server of ours behind a real HAProxy, lets
Prometheus scrape them and a ``canary run`` daemon roll them out: version 2 (more data) is
promoted, version 3 (trained on data that lost almost all of one group) is rolled back for
that group. Nothing here is imported by the controller itself.

Pure: ``data`` (the applications and their labels), ``evaluation`` (offline metrics),
``models`` (training), ``payload`` (the request body), ``configs`` (HAProxy, Prometheus and
the policy) and ``timeline`` (the printed words). With I/O: ``registry`` (MLflow runs and
versions), ``scoring_server``, ``traffic`` (the load), ``slack_sink``, ``services`` (the
server processes) and ``scenario``, which runs it all; ``canary.cli.demo`` is the command.
"""
