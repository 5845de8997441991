// Pending risky tool calls: approve or deny.
'use strict';

(() => {
  const { api, debounce } = troupe;
  const box = document.getElementById('approvals');

  async function load() {
    const list = await api('/api/approvals');
    troupe.renderApprovals(box, list.data, () => {
      document.getElementById('no-approvals').hidden = box.children.length > 0;
    });
    document.getElementById('no-approvals').hidden = list.data.length > 0;
  }

  const reload = debounce(() => load().catch(troupe.showError), 100);
  troupe.start({
    load,
    approval: reload,
    journal: (entry) => { if (entry.event.type === 'approval_decided') reload(); },
  });
})();
