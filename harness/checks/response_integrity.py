"""response_integrity: a success the client sees is a whole answer some provider really gave."""

from __future__ import annotations

from harness.checks.common import Groups, all_of, plural, result, verdict_of, violation_clause
from harness.core.frameworks import ACCOUNTABILITY, MAESTRO, NIST, OBSERVE_LAYER, TRACEABILITY, VALID
from harness.core.registry import check
from harness.core.verdict import CheckResult, Verdict
from harness.ledger.feed import Accumulator, Event, Plain, Record, RunFrame, Totals

NAME = "response_integrity"


@check(
    name=NAME,
    description="Every 2xx carries a valid body or a complete stream, and some provider answered ok for it.",
    evidences=(TRACEABILITY, ACCOUNTABILITY),
    severity="normal",
    frameworks={
        NIST: ("MEASURE function", VALID),
        MAESTRO: (OBSERVE_LAYER,),
    },
    order=90,
)
class ResponseIntegrity(Accumulator):

    def __init__(self, frame: RunFrame) -> None:
        super().__init__(frame)
        self.groups = Groups()
        self.successes = self.streams = 0

    def record(self, rec: Record) -> None:
        request = rec.request
        # transport_error: the gateway signalled the cut itself, so it is not a success passed off as one.
        if not rec.success:
            return
        self.successes += 1
        rid, route = rec.rid, rec.route
        if request.get("stream"):
            self.streams += 1
            if request.get("stream_complete") is not True:
                self._cut_stream(request, rid, route)
        elif request.get("body_valid") is not True:
            self._bad_body(request, rid, route)
        # No call answered ok, nor refused in an answer (a refusal said with HTTP 200 is the provider answering).
        if rec.served is None and not any(c["outcome"] == "content_policy" and 200 <= c["status"] < 300
                                          for c in rec.calls):
            self.groups.add(("no-provider", route), rid, f"success with no provider answering (route {route})",
                            expected="an ok upstream call for every 2xx",
                            observed={"route": route, "upstream_calls": len(rec.calls)})

    def plain(self, batch: list[Plain]) -> None:
        """`record` for requests a provider answered ok (so never one with no provider)."""
        successes = streams = 0
        for request, _, _ in batch:
            try:  # what a request always has (else .get's None, below)
                status, outcome, stream = request["status"], request["outcome"], request["stream"]
            except KeyError:
                status, outcome, stream = request.get("status"), request.get("outcome"), request.get("stream")
            if status is None or not 200 <= status < 300 or outcome == "transport_error":  # Record.success
                continue
            successes += 1
            if stream:
                streams += 1
                if request.get("stream_complete") is not True:
                    self._cut_stream(request, request["id"], request["route"])
            elif request.get("body_valid") is not True:
                self._bad_body(request, request["id"], request["route"])
        self.successes += successes
        self.streams += streams

    def _cut_stream(self, request: Event, rid: str, route: str) -> None:
        self.groups.add(("cut-stream", route), rid,
                        f"a cut stream on route {route} was passed off as a clean {request['status']}",
                        expected={"stream_complete": True},
                        observed={"route": route, "stream_complete": request.get("stream_complete")})

    def _bad_body(self, request: Event, rid: str, route: str) -> None:
        self.groups.add(("bad-body", route), rid, f"a {request['status']} on route {route} carried an invalid body",
                        expected={"body_valid": True},
                        observed={"route": route, "body_valid": request.get("body_valid")})

    def finish(self, frame: RunFrame, totals: Totals) -> CheckResult:
        groups, successes = self.groups, self.successes
        stats = {**totals.scan_stats(), "successes": successes, "streams": self.streams}
        verdict = verdict_of(groups, successes)
        if verdict is Verdict.FAIL:
            summary = f"{groups.total} problems in {plural(successes, '2xx response')}: {violation_clause(groups)}"
        elif verdict is Verdict.PASS:
            summary = (f"complete and answered by a provider: {all_of(successes, '2xx response')} "
                       f"({self.streams} streamed)")
        else:
            summary = f"no 2xx response in {plural(totals.routed, 'request')}: nothing to judge"
        return result(NAME, verdict, summary, groups, stats)

