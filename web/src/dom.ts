// A tiny element builder: h('button', {type: 'submit', onclick: fn}, 'Save').
type Child = Node | string | number | null | undefined | false
type AttrValue = string | number | boolean | null | undefined | EventListener

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, AttrValue> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value)
    } else {
      el.setAttribute(name, value === true ? '' : String(value))
    }
  }
  append(el, ...children)
  return el
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)))
  }
}

/** Replace everything inside `parent` with `children`. */
export function mount(parent: Element, ...children: Child[]): void {
  parent.replaceChildren()
  append(parent, ...children)
}

/** A labelled form field: <label>Text <input ...></label>. */
export function field(label: string, control: HTMLElement): HTMLLabelElement {
  return h('label', { class: 'field' }, h('span', {}, label), control)
}

/** Announce an error next to a form (role=alert), or clear it with an empty message. */
export function showError(box: HTMLElement, message: string): void {
  box.textContent = message
  box.hidden = message === ''
}

export function errorBox(): HTMLParagraphElement {
  return h('p', { class: 'error', role: 'alert', hidden: true })
}
