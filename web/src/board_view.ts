// The shared whiteboard: strokes drawn on a canvas, kept in a Yjs document synchronised over
// /ws/whiteboard/{room} by y-websocket (which reconnects and resynchronises by itself). A stroke
// is one entry of the `shapes` map ({kind: "stroke", points, color, width, by}) and its id is
// appended to `order`, the document's declared roots (docs/api.md, "Whiteboard").
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'
import { appUrl, routeOf } from './api'
import { field, h, mount } from './dom'
import { auth } from './session'
import { dropSocket, noteSocket } from './status'

interface Stroke {
  kind: 'stroke'
  points: [number, number][]
  color: string
  width: number
  by: string
}

const WIDTH = 960
const HEIGHT = 540
const ROOM = /^[A-Za-z0-9_.-]{1,100}$/

export function renderBoard(main: HTMLElement, room: string): () => void {
  const roomInput = h('input', { type: 'text', name: 'room', value: room, pattern: ROOM.source })
  const roomForm = h(
    'form',
    { class: 'inline' },
    field('Room', roomInput),
    h('button', { type: 'submit' }, 'Join'),
  )
  roomForm.addEventListener('submit', (event) => {
    event.preventDefault()
    if (ROOM.test(roomInput.value)) location.hash = `#/board/${roomInput.value}`
  })
  const color = h('input', { type: 'color', name: 'color', value: '#1f6feb' })
  const canvas = h('canvas', {
    width: WIDTH,
    height: HEIGHT,
    class: 'board',
    role: 'img',
    'aria-label': `Whiteboard ${room}: draw with the mouse, a pen or a finger`,
  })
  const summary = h('p', { class: 'strokes', 'data-testid': 'strokes', 'aria-live': 'polite' })
  const presence = h('p', { class: 'presence', 'data-testid': 'presence' })
  mount(
    main,
    h('h1', {}, `Whiteboard: ${room}`),
    h('div', { class: 'tools' }, roomForm, field('Colour', color)),
    canvas,
    summary,
    presence,
  )

  const doc = new Y.Doc()
  const shapes = doc.getMap<Stroke>('shapes')
  const order = doc.getArray<string>('order')
  const base = new URL(appUrl('ws/whiteboard'))
  base.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:'
  const provider = new WebsocketProvider(base.toString(), room, doc, {
    params: auth.token ? { token: auth.token } : {},
  })
  const me = auth.user?.name ?? 'someone'
  provider.awareness.setLocalStateField('user', { name: me })
  provider.on('status', (event: { status: string }) => {
    if (event.status === 'connected') {
      void routeOf(`ws/whiteboard/${room}`).then((backend) =>
        noteSocket('whiteboard', { backend, state: 'open' }),
      )
    } else {
      noteSocket('whiteboard', { state: event.status === 'connecting' ? 'connecting' : 'reconnecting' })
    }
  })

  const pen = canvas.getContext('2d')
  const draw = () => {
    if (pen === null) return
    pen.clearRect(0, 0, WIDTH, HEIGHT)
    for (const id of order.toArray()) {
      const stroke = shapes.get(id)
      if (stroke?.kind === 'stroke') paint(pen, stroke)
    }
    const by = new Map<string, number>()
    for (const stroke of shapes.values()) by.set(stroke.by, (by.get(stroke.by) ?? 0) + 1)
    summary.textContent = `${shapes.size} strokes${by.size ? ': ' : ''}${[...by]
      .map(([name, n]) => `${name} ${n}`)
      .join(', ')}`
    summary.dataset.count = String(shapes.size)
  }
  doc.on('update', draw)
  const showPresence = () => {
    const names = [...provider.awareness.getStates().values()]
      .map((state) => (state.user as { name?: string } | undefined)?.name)
      .filter((name): name is string => typeof name === 'string')
    presence.textContent = `Here now: ${names.sort().join(', ')}`
  }
  provider.awareness.on('change', showPresence)
  draw()
  showPresence()

  let current: Stroke | null = null
  const at = (event: PointerEvent): [number, number] => {
    const box = canvas.getBoundingClientRect()
    return [
      Math.round(((event.clientX - box.left) * WIDTH) / box.width),
      Math.round(((event.clientY - box.top) * HEIGHT) / box.height),
    ]
  }
  canvas.addEventListener('pointerdown', (event) => {
    canvas.setPointerCapture(event.pointerId)
    current = { kind: 'stroke', points: [at(event)], color: color.value, width: 3, by: me }
  })
  canvas.addEventListener('pointermove', (event) => {
    if (current === null || pen === null) return
    current.points.push(at(event))
    paint(pen, current)
  })
  const finish = () => {
    const stroke = current
    current = null
    if (stroke === null || stroke.points.length < 2) return
    const id = `${doc.clientID}-${Date.now().toString(36)}-${shapes.size}`
    doc.transact(() => {
      shapes.set(id, stroke)
      order.push([id])
    })
  }
  canvas.addEventListener('pointerup', finish)
  canvas.addEventListener('pointercancel', finish)

  return () => {
    provider.destroy()
    doc.destroy()
    dropSocket('whiteboard')
  }
}

function paint(pen: CanvasRenderingContext2D, stroke: Stroke): void {
  const [first, ...rest] = stroke.points
  if (first === undefined) return
  pen.strokeStyle = stroke.color
  pen.lineWidth = stroke.width
  pen.lineCap = 'round'
  pen.lineJoin = 'round'
  pen.beginPath()
  pen.moveTo(first[0], first[1])
  for (const [x, y] of rest) pen.lineTo(x, y)
  pen.stroke()
}
