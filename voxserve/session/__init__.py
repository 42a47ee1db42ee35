"""Session and turn state, Ray-free: models are reached through the `Pipeline` interface.

One audio frame, socket to speaker, one layer down per step:
1. `session.RealtimeSession.handle_message` parses it; `handlers.input_audio_buffer_append` routes it.
2. `listener.Listener.append` passes it through its `audio.front_end.FrontEnd` (decode, 16 kHz,
   echo cancellation and noise suppression when asked for), buffers it and feeds the VAD; a pause
   opens a `PauseScope`
   (early decode + semantic judgement) that reports `TurnEnded` when the turn is over.
3. `turn_taking.TurnTaking.on` commits the user item, `transcriber` decodes it, `responder` answers.
4. `response.Response.run` streams LLM text into TTS; its sealed outlet is the only way back out,
   through `RealtimeSession.send` and the writer to the socket, paced by `playback.Playback`
   (which also hands each piece to the echo canceller's far end).
"""
