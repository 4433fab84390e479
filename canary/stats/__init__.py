"""Anytime-valid statistics for canary analysis: e-processes, confidence sequences,
their combination over metrics and slices, fairness measures and minimum samples.

Pure numpy: no I/O, no policy types. ``canary.analysis`` turns a policy and snapshots of
counts into calls to these.
"""
