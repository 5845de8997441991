// troupe dashboard, shared by every page: the API client, DOM building, the
// live event stream and the approval cards.
//
// Rule: text from the server reaches the page only as text (textContent,
// text nodes, attribute values), never as HTML, so a task that says
// <script> shows as the words it is.
'use strict';

const troupe = (() => {
  /** A new element: props are attributes, except text, class, dataset and onX. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'class') node.className = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function toLogin() {
    location.assign('/login?next=' + encodeURIComponent(location.pathname));
  }

  /** A JSON API call; throws an Error with the server's message on failure. */
  async function api(path, options = {}) {
    const init = {
      method: options.method || 'GET',
      headers: { Accept: 'application/json' },
      credentials: 'same-origin',
    };
    if (options.body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      toLogin();
      throw new Error('the API key is needed');
    }
    const type = response.headers.get('content-type') || '';
    const body = type.includes('json') ? await response.json() : await response.text();
    if (!response.ok) {
      const message = body && body.error && body.error.message;
      throw new Error(message || `HTTP ${response.status}`);
    }
    return body;
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  const fmtTime = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '–');
  const fmtMs = (ms) => (ms === null || ms === undefined ? '–' : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);
  function fmtBytes(n) {
    if (!n) return '0 B';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }
  const taskHref = (id) => `/tasks/${encodeURIComponent(id)}`;

  function showError(error) {
    let box = document.getElementById('page-error');
    if (!box) {
      box = el('p', { id: 'page-error', class: 'error card' });
      document.querySelector('main').prepend(box);
    }
    box.textContent = error ? String(error.message || error) : '';
    box.hidden = !error;
  }

  async function refreshApprovalCount() {
    const badge = document.getElementById('approval-count');
    if (!badge) return;
    try {
      const list = await api('/api/approvals');
      badge.textContent = String(list.data.length);
      badge.hidden = list.data.length === 0;
    } catch (_) { /* shown by the page's own calls */ }
  }

  const EVENTS = ['journal', 'progress', 'ux', 'approval', 'host'];

  /**
   * Follows /api/dashboard/events. Every `hello` (the first and each after a
   * reconnect, a server restart included) and every `resync` calls
   * handlers.resync, which reads the page afresh; other events go to the
   * handler of their name.
   */
  function live(handlers) {
    const badge = document.getElementById('live');
    const show = (state) => { badge.dataset.state = state; badge.textContent = state; };
    let source = null;
    let timer = null;
    function open() {
      source = new EventSource('/api/dashboard/events');
      source.addEventListener('hello', () => { show('live'); handlers.resync(); });
      source.addEventListener('resync', () => handlers.resync());
      for (const name of EVENTS) {
        source.addEventListener(name, (message) => {
          let data;
          try { data = JSON.parse(message.data); } catch (_) { return; }
          if (name === 'approval' || (name === 'journal' && data.event && data.event.type === 'approval_decided')) {
            refreshApprovalCount();
          }
          if (handlers[name]) handlers[name](data);
        });
      }
      source.onerror = () => {
        show('reconnecting');
        // The browser reconnects by itself after a dropped connection but
        // gives up for good on an error status (a server still starting
        // answers 503), so start over then; a 401 sends us to the login.
        if (source.readyState === EventSource.CLOSED) {
          source.close();
          clearTimeout(timer);
          timer = setTimeout(() => { refreshApprovalCount(); open(); }, 3000);
        }
      };
    }
    open();
  }

  /** Runs a page: load now, then follow the live stream. */
  function start(page) {
    const run = () => Promise.resolve()
      .then(page.load)
      .then(() => showError(null))
      .catch(showError);
    run();
    refreshApprovalCount();
    live({ ...page, resync: run });
  }

  /** A card for one pending tool call, with approve and deny. */
  function approvalCard(pending, onDecided) {
    const id = pending.request.id;
    const reason = el('input', { class: 'reason', placeholder: 'reason (optional, told to the task on a denial)' });
    const status = el('span', { class: 'error' });
    const buttons = [];
    const decide = async (approved) => {
      buttons.forEach((b) => { b.disabled = true; });
      try {
        const body = { approved };
        if (reason.value.trim()) body.reason = reason.value.trim();
        await api(`/api/approvals/${encodeURIComponent(id)}`, { method: 'POST', body });
        card.remove();
        refreshApprovalCount();
        if (onDecided) onDecided();
      } catch (error) {
        status.textContent = error.message;
        buttons.forEach((b) => { b.disabled = false; });
      }
    };
    buttons.push(el('button', { type: 'button', class: 'approve', onclick: () => decide(true), text: 'Approve' }));
    buttons.push(el('button', { type: 'button', class: 'danger deny', onclick: () => decide(false), text: 'Deny' }));
    const card = el('div', { class: 'approval', dataset: { approvalId: id, taskId: pending.task_id } },
      el('div', {},
        el('strong', { class: 'tool', text: pending.request.tool }),
        ` (${pending.request.risk} risk) · task `,
        el('a', { href: taskHref(pending.task_id), text: pending.task_id }),
        ` · subtask ${pending.subtask}`),
      el('pre', { class: 'args', text: JSON.stringify(pending.request.args, null, 2) }),
      el('div', { class: 'row' }, reason, buttons, status));
    return card;
  }

  /** Shows `pending` in `box`, keeping the cards already there (and what was typed in them). */
  function renderApprovals(box, pending, onDecided) {
    const wanted = new Set(pending.map((p) => p.request.id));
    for (const card of [...box.children]) {
      if (!wanted.has(card.dataset.approvalId)) card.remove();
    }
    const present = new Set([...box.children].map((c) => c.dataset.approvalId));
    for (const p of pending) {
      if (!present.has(p.request.id)) box.append(approvalCard(p, onDecided));
    }
  }

  return { el, api, debounce, fmtTime, fmtMs, fmtBytes, taskHref, start, showError, renderApprovals };
})();
