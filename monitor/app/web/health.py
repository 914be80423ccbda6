"""``/healthz`` (up or down: the database, and the scheduler when this process runs one) and ``/metrics``."""

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
        body = {
            "status": "ok" if ok else "fail",
            "database": "ok" if db else "unreachable",
            "scheduler": scheduler,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    def metrics_page(self, _request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)
