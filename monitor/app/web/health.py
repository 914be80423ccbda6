"""``/healthz`` and ``/metrics``.

``/healthz`` answers 503 with a short reason when the database does not answer, when
the scheduler of this process stopped, or when the daemon's poll cycles or delivery
rounds keep failing (:class:`~monitor.app.metrics.RunHealth`: a read-only database or a
full disk, where every read and so a ping still works); 200 otherwise.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.app.metrics import CONTENT_TYPE, Metrics
from monitor.app.web.ui import Ui


class Health:
    """Health and metrics, for probes and Prometheus."""

    def __init__(self, ui: Ui) -> None:
        self.state = ui.state
        state = ui.state
        self.metrics = state.metrics or Metrics(store=lambda: state.store)

    def routes(self) -> list[Route]:
        return [Route("/healthz", self.healthz), Route("/metrics", self.metrics_page)]

    def healthz(self, _request: Request) -> Response:
        db = self.state.store.ping()
        if self.state.scheduler_alive is None:
            scheduler = "not run by this process"
            ok = db
        else:
            alive = self.state.scheduler_alive()
            scheduler = "running" if alive else "stopped"
            ok = db and alive
        problems = self.metrics.health.problems()
        ok = ok and not problems
        body: dict[str, object] = {
            "status": "ok" if ok else "fail",
            "database": "ok" if db else "unreachable",
            "scheduler": scheduler,
        }
        if problems:
            body["reason"] = "; ".join(problems)
        return JSONResponse(body, status_code=200 if ok else 503)

    def metrics_page(self, _request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)
