// What the Learner knows (its statistics by kind, complexity band and model) and the choices it made.
'use strict';

(() => {
  const { el, api, debounce, fmtMs, fmtTime, taskHref } = troupe;
  const $ = (name) => document.getElementById(name);
  const SVG = 'http://www.w3.org/2000/svg';

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // One horizontal bar per kind × model: its success rate.
  function renderChart(rows) {
    const label = 220;
    const width = 760;
    const barWidth = width - label - 140;
    const rowHeight = 26;
    const chart = svg('svg', { viewBox: `0 0 ${width} ${Math.max(1, rows.length) * rowHeight + 24}`, role: 'img', 'aria-label': 'success rate by task kind and model' });
    rows.forEach((r, i) => {
      const y = i * rowHeight + 4;
      chart.append(
        svg('text', { x: 0, y: y + 15 }, `${r.kind} ${r.complexity} · ${r.model}`),
        svg('rect', { class: 'axis', x: label, y, width: barWidth, height: 18, fill: 'none' }),
        svg('rect', { class: 'bar', x: label, y, width: Math.max(0, r.success_rate * barWidth), height: 18 }),
        svg('text', { x: label + barWidth + 8, y: y + 15 }, `${Math.round(r.success_rate * 100)}% of ${r.count}`));
    });
    const axisY = rows.length * rowHeight + 18;
    for (const p of [0, 50, 100]) {
      chart.append(svg('text', { x: label + (p / 100) * barWidth - 8, y: axisY }, `${p}%`));
    }
    $('chart').replaceChildren(chart);
  }

  function renderTable(rows) {
    $('outcomes').tBodies[0].replaceChildren(...rows.map((r) => el('tr', {},
      el('td', { text: r.kind }), el('td', { text: r.complexity }), el('td', { text: r.model }),
      el('td', { class: 'num', text: r.count }), el('td', { class: 'num', text: r.successes }),
      el('td', { class: 'num', text: `${Math.round(r.success_rate * 100)}%` }),
      el('td', { class: 'num', text: r.budget_hits }), el('td', { class: 'num', text: r.mean_tokens }),
      el('td', { class: 'num', text: r.quantile_tokens ?? '–' }),
      el('td', { class: 'num', text: fmtMs(r.mean_latency_ms) }),
      el('td', { class: 'num', text: r.mean_cost.toFixed(4) }))));
    $('no-outcomes').hidden = rows.length > 0;
  }

  function renderChoices(choices) {
    $('choices').tBodies[0].replaceChildren(...choices.slice().reverse().map((c) => el('tr', {},
      el('td', { text: fmtTime(c.time_ms) }),
      el('td', {}, el('a', { href: taskHref(c.task_id), text: c.task_id })),
      el('td', { text: c.subtask || 'plan' }),
      el('td', { text: c.model }),
      el('td', { text: c.reason }))));
  }

  async function load() {
    const data = await api('/api/learner');
    renderChart(data.outcomes);
    renderTable(data.outcomes);
    renderChoices(data.choices);
  }

  const reload = debounce(() => load().catch(troupe.showError), 500);
  troupe.start({
    load,
    journal: (entry) => {
      if (['planned', 'subtask_started', 'subtask_finished', 'finished'].includes(entry.event.type)) reload();
    },
  });
})();
