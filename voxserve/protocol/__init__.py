"""The wire protocol: typed client and server events, the three dialects, and error codes.

Client frames are parsed into one discriminated union (`client_events.parse_client_event`); the
`session.update` and `response.create` payloads they carry are parsed with the connection's
dialect (`session_config.apply_update`, `response_overrides.parse_response_overrides`). Server
events are typed models with the beta / Voice Live names, each turned into the wire dict of a
connection's dialect by its `render(dialect)` (`server_events`). Nothing outside this package
compares event-type strings.
"""
