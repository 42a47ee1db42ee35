"""Thin Ray Serve deployments: the WebSocket ingress, ASR, LLM and TTS, and the app builder.

A deployment turns an engine from `voxserve.models` into a remote, streaming, autoscaled
service; it does no model work itself.
"""
