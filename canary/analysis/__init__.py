"""From snapshots of cumulative counts to a decision per tick, and the replay format.

``Analyzer(policy).update(snapshot)`` (``canary.analysis.analyzer``) is what the daemon runs at
every tick; ``replay_file`` / ``replay_lines`` (``canary.analysis.replay``) run the same over
recorded rollouts. Snapshot types live in ``canary.analysis.snapshot``. Pure: no I/O except
reading replay files.
"""
