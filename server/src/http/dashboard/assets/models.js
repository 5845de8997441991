// The model host: catalog, loaded models, memory gauge and load timeline.
'use strict';

(() => {
  const { el, api, debounce, fmtBytes, fmtTime } = troupe;
  const $ = (name) => document.getElementById(name);
  const pct = (part, whole) => (whole ? Math.min(100, (100 * part) / whole) : 0);

  function renderGauge(status) {
    const used = pct(status.used_bytes, status.budget_bytes);
    const reserved = pct(status.reserved_bytes, status.budget_bytes);
    $('gauge-used').style.width = `${used}%`;
    $('gauge-reserved').style.width = `${reserved}%`;
    const gauge = $('gauge');
    gauge.setAttribute('role', 'meter');
    gauge.setAttribute('aria-valuemin', '0');
    gauge.setAttribute('aria-valuemax', String(status.budget_bytes));
    gauge.setAttribute('aria-valuenow', String(status.used_bytes));
    const loading = status.loading.length ? ` · loading ${status.loading.join(', ')}` : '';
    const queued = status.queued_loads ? ` · ${status.queued_loads} loads waiting` : '';
    $('gauge-text').textContent = `${fmtBytes(status.used_bytes)} in use, ${fmtBytes(status.reserved_bytes)} reserved, of a ${fmtBytes(status.budget_bytes)} budget (${used.toFixed(0)}%)${loading}${queued}`;
  }

  function renderLoaded(models) {
    $('loaded').tBodies[0].replaceChildren(...models.map((m) => el('tr', { dataset: { model: m.name } },
      el('td', { text: m.name }),
      el('td', { class: 'num', text: fmtBytes(m.memory.total) }),
      el('td', { class: 'num slots', text: `${m.slots_in_use} / ${m.slots}` }),
      el('td', { class: 'num', text: m.queued_requests }),
      el('td', { text: m.pinned ? 'pinned' : '' }),
      el('td', { text: m.expires_at ? fmtTime(m.expires_at * 1000) : '–' }))));
    $('none-loaded').hidden = models.length > 0;
  }

  function source(s) {
    if (s.kind === 'hugging_face') return `Hugging Face ${s.repo}`;
    if (s.kind === 'ollama') return `Ollama ${s.model}:${s.tag}`;
    return 'model dir';
  }

  function renderCatalog(catalog, loaded) {
    const names = new Set(loaded.map((m) => m.name));
    $('catalog').tBodies[0].replaceChildren(...catalog.map((m) => el('tr', { dataset: { model: m.name } },
      el('td', {}, el('strong', { text: m.name }), names.has(m.name) ? [' ', el('span', { class: 'state', dataset: { state: 'running' }, text: 'loaded' })] : null),
      el('td', { text: m.architecture }),
      el('td', { class: 'num', text: m.parameters.toLocaleString() }),
      el('td', { text: m.quantization }),
      el('td', { class: 'num', text: m.context_length || '–' }),
      el('td', { class: 'num', text: fmtBytes(m.file_size) }),
      el('td', { text: source(m.source) }))));
  }

  function detail(e) {
    switch (e.event) {
      case 'load_started': return `planned ${fmtBytes(e.estimate_bytes)}`;
      case 'load_waiting': return `needs ${fmtBytes(e.needed_bytes)}, ${fmtBytes(e.free_bytes)} free`;
      case 'loaded': return `in ${e.duration.toFixed(2)} s, holds ${fmtBytes(e.memory.total)}`;
      case 'load_failed': return e.error;
      case 'unloaded': {
        const why = e.reason.kind === 'evicted' ? `evicted for ${e.reason.for_model}` : e.reason.kind.replace(/_/g, ' ');
        return `${why}, freed in ${e.duration.toFixed(2)} s`;
      }
      default: return '';
    }
  }

  function renderTimeline(entries) {
    const longest = Math.max(0.001, ...entries.map((e) => e.duration || 0));
    $('host-timeline').replaceChildren(...entries.slice().reverse().map((e) => {
      const bar = el('span', { class: 'gauge-used duration' });
      const track = el('div', { class: 'gauge' }, bar);
      bar.style.width = `${pct(e.duration || 0, longest)}%`;
      return el('li', { dataset: { kind: e.event } },
        el('span', { class: 't', text: fmtTime(e.time_ms) }),
        el('span', { class: 'kind', text: `${e.event.replace(/_/g, ' ')} ${e.model}` }),
        el('span', { class: 'detail' }, detail(e), e.duration !== undefined ? track : null));
    }));
    $('no-host-events').hidden = entries.length > 0;
  }

  async function load() {
    const [models, timeline] = await Promise.all([api('/api/dashboard/models'), api('/api/models/timeline')]);
    renderGauge(models.status);
    renderLoaded(models.status.models);
    renderCatalog(models.catalog, models.status.models);
    renderTimeline(timeline.data);
  }

  troupe.start({ load, host: debounce(() => load().catch(troupe.showError), 250) });
})();
