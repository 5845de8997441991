// The conversation with the UX agent, with the progress it reports.
'use strict';

(() => {
  const { el, api, taskHref } = troupe;
  const conversation = document.getElementById('chat').dataset.conversation;
  const list = document.getElementById('messages');
  let history = [];
  // Progress reports are not stored; they live as long as the page.
  const reports = [];

  function render() {
    const items = [
      ...history.map((m) => ({ time: m.time_ms, role: m.role === 'user' ? 'user' : 'assistant', text: m.content })),
      ...reports,
    ].sort((a, b) => a.time - b.time);
    list.replaceChildren(...items.map((item) => el('li', { class: item.role },
      item.text,
      item.taskId ? [' ', el('a', { href: taskHref(item.taskId), text: item.taskId })] : null)));
    list.scrollTop = list.scrollHeight;
  }

  async function load() {
    const body = await api(`/api/conversations/${encodeURIComponent(conversation)}`);
    history = body.data;
    render();
  }

  document.getElementById('chat-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = document.getElementById('chat-text');
    const error = document.getElementById('chat-error');
    const text = input.value;
    if (!text.trim()) return;
    input.value = '';
    error.hidden = true;
    reports.push({ time: Date.now(), role: 'user pending', text });
    render();
    try {
      const reply = await api('/api/agent/chat', { method: 'POST', body: { conversation, text } });
      const pending = reports.findIndex((r) => r.role === 'user pending');
      if (pending >= 0) reports.splice(pending, 1);
      await load();
      const last = history[history.length - 1];
      if (!last || last.content !== reply.text) {
        reports.push({ time: Date.now(), role: 'assistant', text: reply.text });
      }
      if (reply.task_id) {
        reports.push({ time: Date.now(), role: 'report', text: 'Started task', taskId: reply.task_id });
      }
      render();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  });

  troupe.start({
    load,
    ux: (message) => {
      if (message.conversation !== conversation && message.conversation !== '') return;
      reports.push({ time: Date.now(), role: 'report', text: message.text });
      render();
    },
  });
})();
