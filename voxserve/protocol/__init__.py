"""The wire protocol: typed client and server events, the three dialects, and error codes.

Client events are parsed into one discriminated union (`client_events.parse_client_event`);
server events are typed models with the beta / Voice Live names, rendered for the connection's
dialect by `render.render_event`. Nothing outside this package compares event-type strings.
"""
