// One text turn through the official `openai` npm package's realtime client, over wss://.
//
//   OPENAI_API_KEY=KEY NODE_EXTRA_CA_CERTS=cert.pem node realtime_tls.mjs https://127.0.0.1:PORT/v1
//
// The SDK builds its socket URL from the client's baseURL and always dials wss:// (it sets the
// scheme itself, openai/realtime/internal-base.js), so this is how a JavaScript app reaches the
// server. The certificate is trusted through NODE_EXTRA_CA_CERTS, never by turning verification
// off. Prints one JSON line per server event (its type, plus a few fields tests/tls reads) and
// exits 0 after `response.done` (closing normally); 1 on an `error`, a socket failure, a close or after TIMEOUT_S.
//
// --client websocket (default): OpenAIRealtimeWebSocket, the SDK's browser client; it offers the
// key as the `openai-insecure-api-key.<key>` subprotocol. It needs a global WebSocket, which
// Node 20 has only behind a flag, so `ws`'s is installed when there is none.
// --client ws: OpenAIRealtimeWS, the SDK's Node client on `ws`; it sends `Authorization: Bearer`.

import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { OpenAIRealtimeWebSocket } from 'openai/realtime/websocket';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import { WebSocket as NodeWebSocket } from 'ws';

const TIMEOUT_S = 120;
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    client: { type: 'string', default: 'websocket' },
    model: { type: 'string', default: 'gpt-realtime' },
  },
});
if (positionals.length !== 1 || !['websocket', 'ws'].includes(values.client)) {
  console.error('usage: realtime_tls.mjs [--client websocket|ws] [--model M] https://HOST:PORT/v1');
  process.exit(2);
}

function emit(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

function fail(message) {
  console.error(`realtime_tls: ${message}`);
  process.exit(1);
}

// which WebSocket the browser client runs on: Node's own, or ws's (none for --client ws)
let globalWebSocket = null;
if (values.client === 'websocket') {
  globalWebSocket = 'built-in';
  if (typeof globalThis.WebSocket === 'undefined') {
    globalThis.WebSocket = NodeWebSocket;
    globalWebSocket = 'ws';
  }
}
// apiKey from OPENAI_API_KEY, as the SDK reads it by default
const client = new OpenAI({ baseURL: positionals[0] });
const rt = values.client === 'ws'
  ? new OpenAIRealtimeWS({ model: values.model }, client)
  : new OpenAIRealtimeWebSocket({ model: values.model }, client);
emit({ client: values.client, url: rt.url.toString(), global_websocket: globalWebSocket });

const timer = setTimeout(() => fail(`no response.done within ${TIMEOUT_S} s`), TIMEOUT_S * 1000);

function onOpen() {
  rt.send({
    type: 'session.update',
    session: {
      type: 'realtime',
      output_modalities: ['text'],
      instructions: 'You are a helpful assistant. Answer in one short sentence.',
    },
  });
  rt.send({
    type: 'conversation.item.create',
    item: {
      type: 'message',
      role: 'user',
      content: [{ type: 'input_text', text: 'What is the capital of France?' }],
    },
  });
  rt.send({ type: 'response.create' });
}

let done = false;
function onClose(code, reason) {
  if (done) {
    process.exit(0);
  }
  fail(`socket closed before response.done (code ${code}${reason ? `, ${reason}` : ''})`);
}

// The two clients expose different sockets: the browser API's events, or ws's EventEmitter.
if (values.client === 'ws') {
  rt.socket.on('open', onOpen);
  rt.socket.on('close', (code, reason) => onClose(code, reason.toString()));
} else {
  rt.socket.addEventListener('open', onOpen);
  rt.socket.addEventListener('close', (event) => onClose(event.code, event.reason));
}

// An `error` event from the server and a socket failure (a bad certificate, a refused upgrade)
// both arrive here: the SDK routes them to its `error` listener.
rt.on('error', (err) => {
  const cause = err.cause ? ` (${err.cause.message ?? err.cause})` : '';
  fail(`${err.message}${cause}`);
});

rt.on('event', (event) => {
  const line = { type: event.type };
  if (event.type === 'session.created' || event.type === 'session.updated') {
    line.output_modalities = event.session?.output_modalities;
  } else if (event.type === 'response.output_text.delta'
             || event.type === 'response.output_audio_transcript.delta') {
    line.delta = event.delta;
  } else if (event.type === 'response.output_audio.delta') {
    line.bytes = Buffer.from(event.delta, 'base64').length;
  } else if (event.type === 'response.done') {
    line.status = event.response?.status;
  }
  emit(line);
  if (event.type === 'response.done') {
    // a normal close, so the server sees the client leave; exits on its `close`
    done = true;
    clearTimeout(timer);
    setTimeout(() => process.exit(0), 5000).unref();
    rt.close();
  }
});
