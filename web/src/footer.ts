// The footer: which backend served the last API call and each open socket.
import { h, mount } from './dom'
import { onStatus, status } from './status'

export function renderFooter(footer: HTMLElement): void {
  const draw = () => {
    const api = status.api
    const parts: HTMLElement[] = [
      h(
        'span',
        { class: 'served', 'data-testid': 'api-backend', 'data-backend': api.backend ?? '' },
        'API: ',
        h('strong', {}, api.backend ?? '—'),
        api.feature ? ` (${api.feature})` : '',
      ),
    ]
    for (const [name, socket] of Object.entries(status.sockets)) {
      parts.push(
        h(
          'span',
          {
            class: 'served',
            'data-testid': `${name}-socket`,
            'data-backend': socket.backend ?? '',
            'data-state': socket.state,
          },
          `${name} socket: `,
          h('strong', {}, socket.backend ?? '—'),
          socket.state === 'open' ? '' : ` (${socket.state})`,
        ),
      )
    }
    mount(footer, h('span', { class: 'label' }, 'Served by'), ...parts)
  }
  onStatus(draw)
  draw()
}
