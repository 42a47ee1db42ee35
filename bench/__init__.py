"""Benchmarks: the load client with its reports, and the in-process stage benchmarks.

Against a running server, over its WebSocket only: `main` (`voxserve bench`) with `load` and
`report`, `interruptions`, `soak` with `soak_report`, `tracing_overhead` and the client runs
of `ttfa_single`. They speak the protocol through `voxserve.client` and `voxserve.protocol`, as
any client would (`soak` also reads Ray's processes from `/proc` when the server is local).
In this process, on the engines themselves: `ttfa_single.stage_floors` (engines built by
`voxserve.models.factory`, the same builders the server's stages use), `long_session` (a
50-turn typed conversation against the LLM engine, past its context) and `turn_taking` (the
session's turn detector replayed over recorded speech).

Rule: nothing here imports `voxserve.deployments`. A benchmark reaches the Serve app only through
its socket (and `/stats`, `/health` over HTTP); it never imports the Ray Serve wrappers.
Modules import each other absolutely (`voxserve.bench.report`), as the rest of the code does.
"""
