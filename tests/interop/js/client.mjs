// Drives a real yjs doc through y-websocket's WebsocketProvider; line-delimited JSON on stdin/stdout.
// Usage: node client.mjs <server-url> <room> [token]. Each command line gets one JSON reply line.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const [url, room, token] = process.argv.slice(2)
const doc = new Y.Doc()
const provider = new WebsocketProvider(url, room, doc, {
  WebSocketPolyfill: WebSocket,
  params: token ? { token } : {},
})

const shapes = doc.getMap('shapes')
const order = doc.getArray('order')
const notes = doc.getText('notes')

const docJson = () => ({ shapes: shapes.toJSON(), order: order.toJSON(), notes: notes.toString() })

const until = (check, onEvent) => new Promise((resolve) => {
  if (check()) return resolve()
  const listener = () => { if (check()) { off(); resolve() } }
  const off = onEvent(listener)
})
const onDoc = (fn) => { doc.on('update', fn); return () => doc.off('update', fn) }
const onPeers = (fn) => { provider.awareness.on('change', fn); return () => provider.awareness.off('change', fn) }
const onSync = (fn) => { provider.on('sync', fn); return () => provider.off('sync', fn) }

const peers = () => {
  const out = {}
  provider.awareness.getStates().forEach((state, id) => { if (id !== doc.clientID) out[id] = state })
  return out
}

const commands = {
  synced: async () => { await until(() => provider.synced, onSync) },
  set_shape: async ({ key, value }) => {
    doc.transact(() => { shapes.set(key, value); order.push([key]) })
  },
  append_note: async ({ text }) => { notes.insert(notes.length, text) },
  wait_shapes: async ({ keys }) => { await until(() => keys.every((k) => shapes.has(k)), onDoc) },
  wait_peer: async ({ field, value }) => {
    await until(() => Object.values(peers()).some((s) => s && s[field] === value), onPeers)
  },
  json: async () => docJson(),
  peers: async () => peers(),
  awareness: async ({ state }) => { provider.awareness.setLocalState(state) },
  disconnect: async () => { provider.disconnect() },
  connect: async () => { provider.connect() },
  client_id: async () => doc.clientID,
}

const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  const cmd = JSON.parse(line)
  try {
    const result = await commands[cmd.op](cmd)
    reply({ ok: true, result: result ?? null })
  } catch (err) {
    reply({ ok: false, error: String(err) })
  }
})
rl.on('close', () => { provider.destroy(); process.exit(0) })
