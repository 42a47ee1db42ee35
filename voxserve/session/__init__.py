"""Session and turn state: the input buffer, turn detection, the conversation and responses.

Ray-free: a session talks to the models through the `Pipeline` interface, which the Ray
ingress implements with Serve handles and unit tests implement with fakes.
"""
