"""VoxServe: a self-hosted speech-to-speech server speaking OpenAI Realtime and Azure Voice Live.

This package is the Ray-free core: wire protocol, session and turn state, audio utilities,
configuration and the command line. Model engines live in `voxserve.models` and the Ray Serve
wrappers in `voxserve.deployments` (see the README's layout section for why they are mapped there).
"""

__version__ = "0.1.0"
