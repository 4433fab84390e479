"""The scoring server: a real saved model, its metrics per version and group, late labels.

The model is the demo's version 2, saved the way the demo logs it and loaded back through
``mlflow.pyfunc`` (from a local folder: no tracking server is needed for that). Requests go
through the app in process, and once through a real HTTP server on a loopback port with the
demo's own load generator, so every count below is what Prometheus would scrape.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from canary.demo.data import FEATURES, GROUP, LABEL, UNSEEN_EMPLOYMENT
from canary.demo.models import predict
from canary.demo.payload import request_body
from canary.demo.registry import model_artifact_options
from canary.demo.scoring_server import ScoringApp, load_predictor, model_uri
from canary.demo.traffic import LiveTraffic, live_rows
from canary.sim.model_server import SimServer
from canary.sim.payload import BadRequestError
from tests.harness.model_server import metric_sum


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory) -> tuple[Any, list[dict[str, Any]]]:
    """Version 2 saved as the demo logs it, loaded back as the server loads it."""
    import warnings

    import mlflow.sklearn

    path = tmp_path_factory.mktemp("model") / "v2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(
            trained.models["2"],
            str(path),
            **model_artifact_options(trained.models["2"], trained.data.versions["2"].train),
        )
        return load_predictor(str(path))


def records(trained, n: int, *, unseen: bool = False) -> list[tuple[dict[str, Any], str, int]]:
    live = trained.data.live
    chosen = live[(live["employment_type"] == UNSEEN_EMPLOYMENT) == unseen].head(n)
    rows = chosen[list(FEATURES)].to_dict(orient="records")
    return list(zip(rows, chosen[GROUP], chosen[LABEL].astype(int), strict=True))


def invoke(app: ScoringApp, items: Sequence[tuple[dict[str, Any], str, int | None]]):
    return app.predict(json.dumps(request_body(items)).encode(), started=0.0)


def exported(app: ScoringApp, name: str, **labels: str) -> float:
    return metric_sum(app.exposition().decode(), name, model="credit-risk", version="2", **labels)


def test_the_loaded_model_scores_like_the_trained_one(trained, saved):
    predictor, warm = saved
    live = trained.data.live
    frame = live[live["employment_type"] != UNSEEN_EMPLOYMENT].head(400)
    got = predictor(frame[list(FEATURES)].to_dict(orient="records"))
    assert got == predict(trained.models["2"], frame).tolist()
    assert len(warm) == 1
    assert predictor(warm) in ([0], [1])


def test_the_loaded_model_refuses_what_it_cannot_score(trained, saved):
    predictor, _ = saved
    (record, _, _), *_ = records(trained, 1, unseen=True)
    with pytest.raises(ValueError, match="never seen in training"):
        predictor([record])
    incomplete = {k: v for k, v in records(trained, 1)[0][0].items() if k != "income"}
    with pytest.raises(BadRequestError, match="income"):
        predictor([incomplete])


def test_predictions_count_at_once_and_labels_only_after_the_delay(trained, saved):
    predictor, _ = saved
    clock = FakeClock()
    app = ScoringApp("credit-risk", "2", predictor, label_delay_s=2.0, clock=clock)
    items = records(trained, 300)
    expected = predictor([r for r, _, _ in items])
    for item in items:
        status, _ = invoke(app, [item])
        assert status == 200
    for group in ("a", "b"):
        mine = [(p, label) for p, (_, g, label) in zip(expected, items, strict=True) if g == group]
        approved = sum(p for p, _ in mine)
        assert exported(app, "model_predictions_total", group=group, predicted="1") == approved
        assert exported(app, "model_predictions_total", group=group) == len(mine)
        assert exported(app, "model_labelled_total", group=group) == 0  # truth not in yet
    clock.now += 1.9
    assert exported(app, "model_labelled_total") == 0
    clock.now += 0.2
    for group in ("a", "b"):
        mine = [(p, label) for p, (_, g, label) in zip(expected, items, strict=True) if g == group]
        right = sum(p == label for p, label in mine)
        assert exported(app, "model_labelled_total", group=group, correct="true") == right
        assert (
            exported(app, "model_labelled_total", group=group, correct="false") == len(mine) - right
        )


def test_unlabelled_records_are_scored_but_never_counted_as_right_or_wrong(trained, saved):
    predictor, _ = saved
    app = ScoringApp("credit-risk", "2", predictor, label_delay_s=0.0)
    (record, group, _), *_ = records(trained, 1)
    status, body = invoke(app, [(record, group, None)])
    assert status == 200
    assert body["predictions"] in ([0], [1])
    assert exported(app, "model_predictions_total") == 1
    assert exported(app, "model_labelled_total") == 0


def test_a_record_the_model_cannot_score_fails_the_request(trained, saved):
    predictor, _ = saved
    app = ScoringApp("credit-risk", "2", predictor)
    status, body = invoke(app, records(trained, 1, unseen=True))
    assert status == 500
    assert "never seen in training" in body["message"]
    assert app.failures == 1
    assert exported(app, "model_predictions_total") == 0


def test_bad_requests_are_400s(trained, saved):
    predictor, _ = saved
    app = ScoringApp("credit-risk", "2", predictor)
    (record, group, label), *_ = records(trained, 1)
    assert app.predict(b'{"dataframe_records": [{"group": "a"}], "labels": [7]}', 0.0)[0] == 400
    incomplete = {k: v for k, v in record.items() if k != "debt_ratio"}
    status, body = invoke(app, [(incomplete, group, label)])
    assert status == 400
    assert "debt_ratio" in body["message"]
    assert app.failures == 0


def test_model_uri_checks_names():
    assert model_uri("credit-risk", "3") == "models:/credit-risk/3"
    with pytest.raises(ValueError, match="model name"):
        model_uri("credit/../../x", "3")
    with pytest.raises(ValueError, match="model version"):
        model_uri("credit-risk", "3; rm")


@pytest.fixture
def http_server(saved) -> Iterator[tuple[str, ScoringApp]]:
    predictor, _ = saved
    app = ScoringApp("credit-risk", "2", predictor, label_delay_s=0.0)
    server = SimServer(("127.0.0.1", 0), app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", app
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_live_traffic_over_http_is_counted_per_group_and_status(trained, http_server):
    url, app = http_server
    stats = LiveTraffic(url, trained.data.live, rps=None, workers=3, max_requests=400, seed=1).run(
        30
    )
    assert stats.sent == 400
    assert stats.errors == 0
    assert exported(app, "model_requests_total") == 400
    assert exported(app, "model_requests_total", code="500") == stats.by_status[500]
    assert exported(app, "model_requests_total", code="200") == stats.by_status[200]
    assert stats.by_status[500] > 0  # the live set's unseen employment types
    for group in ("a", "b"):
        # one prediction per answered request of the group: failed ones make none
        assert 0 < exported(app, "model_predictions_total", group=group) <= stats.by_group[group]
    assert exported(app, "model_predictions_total") == stats.by_status[200]
    assert exported(app, "model_labelled_total") == stats.by_status[200]
    assert stats.by_version == {"2": 400}


def test_live_rows_keep_every_application_and_its_label(trained):
    rows = live_rows(trained.data.live)
    live = trained.data.live
    assert {g: len(items) for g, items in rows.items()} == live[GROUP].value_counts().to_dict()
    first_b = live[live[GROUP] == "b"].iloc[0]
    record, label = rows["b"][0]
    assert label == int(first_b[LABEL])
    assert record == {k: first_b[k] for k in FEATURES}
    assert all(type(v) in (float, str) for v in record.values())  # plain JSON values
