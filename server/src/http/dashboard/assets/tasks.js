// The task list: submission form and live states.
'use strict';

(() => {
  const { el, api, debounce, fmtTime, taskHref } = troupe;
  const tbody = document.querySelector('#tasks tbody');
  const form = document.getElementById('submit-form');

  function row(task) {
    const s = task.subtasks;
    const progress = s.total ? `${s.succeeded}/${s.total}${s.running ? ` (${s.running} running)` : ''}` : '–';
    return el('tr', { dataset: { taskId: task.id } },
      el('td', {}, el('a', { href: taskHref(task.id), text: task.id })),
      el('td', { class: 'job', text: task.request }),
      el('td', {}, el('span', { class: 'state', dataset: { state: task.state }, text: task.state })),
      el('td', { text: progress }),
      el('td', { text: task.model || 'automatic' }),
      el('td', { class: 'num', text: task.priority }),
      el('td', { text: fmtTime(task.updated_ms) }));
  }

  async function load() {
    const list = await api('/api/tasks');
    const rows = list.data.slice().reverse().map(row);
    tbody.replaceChildren(...rows);
    document.getElementById('no-tasks').hidden = rows.length > 0;
  }

  async function loadModels() {
    const select = document.getElementById('model');
    try {
      const models = await api('/v1/models');
      for (const m of models.data) select.append(el('option', { value: m.id, text: m.id }));
    } catch (_) { /* the form still works with the automatic choice */ }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const error = document.getElementById('submit-error');
    const button = document.getElementById('submit');
    error.hidden = true;
    const body = { request: document.getElementById('job').value };
    const model = document.getElementById('model').value;
    const priority = parseInt(document.getElementById('priority').value || '0', 10);
    if (model) body.model = model;
    if (priority) body.priority = priority;
    button.disabled = true;
    try {
      await api('/api/tasks', { method: 'POST', body });
      document.getElementById('job').value = '';
      await load();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  const reload = debounce(() => load().catch(troupe.showError), 200);
  troupe.start({ load, journal: reload });
  loadModels();
})();
