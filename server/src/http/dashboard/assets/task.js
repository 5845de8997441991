// One task: plan tree, steps, journal, workspace, approvals and controls.
'use strict';

(() => {
  const { el, api, debounce, fmtMs, fmtBytes, fmtTime } = troupe;
  const id = document.getElementById('task').dataset.taskId;
  const base = `/api/tasks/${encodeURIComponent(id)}`;
  const FINISHED = ['succeeded', 'failed', 'cancelled'];
  const $ = (name) => document.getElementById(name);

  function renderHeader(view) {
    const state = $('task-state');
    state.dataset.state = view.state;
    state.textContent = view.state;
    $('task-request').textContent = view.request;
    const answer = view.answer || view.error;
    $('task-answer').hidden = !answer;
    $('task-answer').textContent = answer || '';
    const finished = FINISHED.includes(view.state);
    $('pause').disabled = finished || view.state === 'paused';
    $('resume').disabled = view.state !== 'paused';
    $('cancel').disabled = finished;
    if (finished) $('progress').textContent = '';
  }

  // Each subtask hangs under the first subtask it depends on.
  function renderPlan(subtasks) {
    const known = new Set(subtasks.map((s) => s.id));
    const children = new Map();
    const roots = [];
    for (const s of subtasks) {
      const parent = s.depends_on.find((d) => known.has(d));
      if (parent === undefined) roots.push(s);
      else children.set(parent, [...(children.get(parent) || []), s]);
    }
    const node = (s) => {
      const meta = [`${s.kind}`, `complexity ${s.complexity}`, s.model, `${s.tokens} tokens`,
        s.attempts > 1 ? `${s.attempts} attempts` : null,
        s.depends_on.length ? `after ${s.depends_on.join(', ')}` : null].filter(Boolean).join(' · ');
      return el('li', { dataset: { subtask: s.id } },
        el('span', { class: 'state', dataset: { state: s.state }, text: s.state }), ' ',
        el('strong', { text: s.id }), ' ',
        el('span', { class: 'desc', text: s.description }),
        el('div', { class: 'meta', text: meta }),
        children.has(s.id) ? el('ul', {}, children.get(s.id).map(node)) : null);
    };
    $('plan').replaceChildren(...roots.map(node));
  }

  // Model time: since the subtask's previous entry; tool time: as measured.
  function renderSteps(events) {
    const rows = [];
    const open = new Map();
    const last = new Map();
    for (const entry of events) {
      const e = entry.event;
      const key = `${e.subtask}/${e.attempt}/${e.step}`;
      if (e.type === 'step_started') {
        const row = { subtask: e.subtask, step: e.attempt > 1 ? `${e.step} (attempt ${e.attempt})` : `${e.step}`, tool: e.tool, tokens: e.tokens, modelMs: last.has(e.subtask) ? entry.time_ms - last.get(e.subtask) : null, toolMs: null };
        rows.push(row);
        open.set(key, row);
      } else if (e.type === 'step_observed' && open.has(key)) {
        open.get(key).toolMs = e.tool_ms;
      }
      if (e.subtask !== undefined) last.set(e.subtask, entry.time_ms);
    }
    const total = rows.reduce((sum, r) => sum + (r.tokens || 0), 0);
    $('steps').tBodies[0].replaceChildren(...rows.map((r) => el('tr', {},
      el('td', { text: r.subtask }), el('td', { text: r.step }), el('td', { text: r.tool }),
      el('td', { class: 'num', text: r.tokens }), el('td', { class: 'num', text: fmtMs(r.modelMs) }),
      el('td', { class: 'num', text: fmtMs(r.toolMs) }))),
    el('tr', {}, el('th', { text: 'Total' }), el('td'), el('td'), el('th', { class: 'num', text: total }), el('td'), el('td')));
  }

  const short = (text, n) => (text.length > n ? `${text.slice(0, n)}…` : text);
  const args = (value) => short(JSON.stringify(value), 300);

  function describe(e) {
    switch (e.type) {
      case 'submitted': return e.request;
      case 'planned': return `${e.subtasks.length} subtasks, planned by ${e.model}: ${e.reason}`;
      case 'subtask_started': return `${e.subtask} attempt ${e.attempt} on ${e.model}: ${e.reason}`;
      case 'step_started': return `${e.subtask} step ${e.step}: ${e.tool} ${args(e.args)} (${e.tokens} tokens)\n${e.thought}`;
      case 'step_observed': return `${e.subtask} step ${e.step}${e.is_error ? ' [error]' : ''} in ${fmtMs(e.tool_ms)}:\n${short(e.observation, 600)}`;
      case 'step_committed': return `${e.subtask} step ${e.step} → checkpoint ${e.checkpoint.slice(0, 10)}`;
      case 'approval_requested': return `${e.subtask} asks to run ${e.tool} ${args(e.args)}`;
      case 'approval_decided': return e.approved ? 'approved' : 'denied';
      case 'subtask_finished': return `${e.subtask} ${e.success ? 'succeeded' : 'failed'} (${e.tokens} tokens): ${short(e.summary, 600)}`;
      case 'delegated': return `${e.subtask}/${e.attempt} runs on node ${e.node}: ${e.reason}`;
      case 'failed_over': return `${e.subtask || 'director'} served by ${e.served_by} (${e.model}) after ${e.failed.map(([link, why]) => `${link}: ${why}`).join('; ')}`;
      case 'replanning': return e.reason;
      case 'recovered': return e.detail;
      case 'finished': return `${e.state}: ${short(e.summary, 600)}`;
      default: return '';
    }
  }

  function renderJournal(events) {
    const start = events.length ? events[0].time_ms : 0;
    $('journal').replaceChildren(...events.map((entry) => el('li', { dataset: { kind: entry.event.type } },
      el('span', { class: 't', text: `+${fmtMs(entry.time_ms - start)}` }),
      el('span', { class: 'kind', text: entry.event.type.replace(/_/g, ' ') }),
      el('span', { class: 'detail', text: describe(entry.event) }))));
  }

  async function loadApprovals() {
    const list = await api('/api/approvals');
    const mine = list.data.filter((p) => p.task_id === id);
    const box = document.querySelector('#task-approvals .approvals');
    troupe.renderApprovals(box, mine, () => { $('task-approvals').hidden = box.children.length === 0; });
    $('task-approvals').hidden = mine.length === 0;
  }

  function showText(pre, text, diff) {
    pre.hidden = false;
    if (!diff) { pre.textContent = text; return; }
    pre.replaceChildren(...text.split('\n').map((line) => {
      const kind = line.startsWith('@@') ? 'hunk' : line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : null;
      return el('span', { class: kind }, `${line}\n`);
    }));
  }

  async function loadWorkspace() {
    const [files, checkpoints] = await Promise.all([api(`${base}/files`), api(`${base}/checkpoints`)]);
    $('files').replaceChildren(...files.data.map((f) => el('li', {},
      el('button', { type: 'button', class: 'link', dataset: { path: f.path }, text: f.path, onclick: async () => {
        showText($('file-view'), await api(`${base}/files/${f.path.split('/').map(encodeURIComponent).join('/')}`));
      } }), ` ${fmtBytes(f.size)}`)));
    $('checkpoints').replaceChildren(...checkpoints.data.map((c) => el('li', { dataset: { commit: c.commit } },
      el('button', { type: 'button', class: 'link', text: c.step, onclick: async () => {
        const d = await api(`${base}/checkpoints/${encodeURIComponent(c.commit)}/diff`);
        showText($('diff'), d.patch || '(no change)', true);
      } }),
      ` ${fmtTime(c.time_ms)} · ${c.files_changed} files, +${c.insertions} −${c.deletions}`)));
  }

  async function load() {
    const view = await api(base);
    renderHeader(view);
    renderPlan(view.subtasks);
    renderSteps(view.events);
    renderJournal(view.events);
    await Promise.all([loadApprovals(), loadWorkspace()]);
  }

  for (const action of ['pause', 'resume', 'cancel']) {
    $(action).addEventListener('click', async () => {
      $('control-error').hidden = true;
      try {
        await api(`${base}/${action}`, { method: 'POST', body: {} });
        await load();
      } catch (e) {
        $('control-error').textContent = e.message;
        $('control-error').hidden = false;
      }
    });
  }

  const reload = debounce(() => load().catch(troupe.showError), 150);
  troupe.start({
    load,
    journal: (entry) => { if (entry.task_id === id) reload(); },
    approval: (pending) => { if (pending.task_id === id) reload(); },
    progress: (p) => {
      if (p.task_id === id) $('progress').textContent = `${p.text} (${p.tokens} tokens so far)`;
    },
  });
})();
