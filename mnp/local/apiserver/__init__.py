"""The local Kubernetes API server: HTTPS, bearer tokens, sqlite persistence, watches, CRDs.

Start it with `mnp local apiserver --dir DIR [--address 127.0.0.1:PORT]` (PORT 0 picks a free port);
it is ready once DIR/kubeconfig exists and `/version` answers (a stale kubeconfig is removed at start).
DIR holds state.db (sqlite WAL), ca.crt/ca.key, server.crt/server.key, token (the admin bearer
token), sa.key (service-account token signing key) and kubeconfig. In-process: `server.start(DIR)`.
Module map: storage (sqlite, global resourceVersion), catalog (served types), objects, admission,
lifecycle, pods, events (semantics), watch, watchstream, paging, patch, apply, schema (writes and
validation), table, discovery, openapi, rbac, tokens, reviews, protobuf, faults, app (dispatch),
handler (HTTPS transport), server (assembly, CLI entry).

Fault switches (tests): `POST /mnp-admin/faults` with the admin token and a JSON object, any of
  {"failNext": {"count": N, "code": 422|429|500|503|504, "pathPrefix": "/api"}}  next N requests fail
  {"watchGone": true|false}   every new watch gets an ERROR 410 Expired event and ends
  {"dropWatches": true}       every open watch stream ends now
  {"latencyMs": N}            each request waits N ms first
  {"bookmarkSeconds": S}      interval of watch BOOKMARK events (default 60)
  {"reset": true}             clear all of the above
`GET /mnp-admin/faults` returns the current switches. Service-account tokens come from the
TokenRequest subresource (`POST .../serviceaccounts/NAME/token`) and are authorized with RBAC.
"""
