// dbwarden dashboard: refresh, stale marker, filters, token actions. Loaded from the
// daemon itself (CSP: script-src 'self'); every page works without it, read-only.
'use strict';
(function () {
  const KEY = 'dbwarden-api-token';
  const body = document.body;
  const every = Number(body.dataset.refresh || 0);
  const stale = document.getElementById('stale');
  const updated = document.getElementById('updated');
  let lastOk = Date.now();
  let busy = false;

  function clock(t) { return new Date(t).toLocaleTimeString(); }
  function setUpdated() { if (updated) updated.textContent = 'updated ' + clock(lastOk); }

  function markStale() {
    body.classList.add('is-stale');
    if (stale) {
      stale.hidden = false;
      stale.textContent = 'STALE \u2014 the daemon has not answered since ' + clock(lastOk);
    }
  }

  // Replaces the content of each [data-live] region by the fresh page's, keeping what the
  // user set: panels stay open or closed (they are outside the regions), the scroll
  // position stays, the chart range is in the URL.
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const r = await fetch(location.href, { cache: 'no-store', headers: { Accept: 'text/html' } });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
      for (const fresh of doc.querySelectorAll('[data-live][id]')) {
        const old = document.getElementById(fresh.id);
        if (old && old.innerHTML !== fresh.innerHTML) old.innerHTML = fresh.innerHTML;
      }
      lastOk = Date.now();
      body.classList.remove('is-stale');
      if (stale) stale.hidden = true;
      setUpdated();
      showRemoveButtons();
      body.dataset.refreshed = String(Number(body.dataset.refreshed || 0) + 1);
    } catch (_) {
      markStale();
    } finally {
      busy = false;
    }
  }
  if (every > 0) {
    setUpdated();
    setInterval(refresh, every * 1000);
  }

  // Filters apply on change (the Apply button is for pages without script).
  const filters = document.getElementById('filters');
  if (filters) {
    filters.addEventListener('change', () => filters.submit());
  }

  // ---- actions (need the API token) ----
  const actions = document.getElementById('actions');
  if (!actions) return;
  const target = actions.dataset.target;
  const out = document.getElementById('action-out');
  const tokenForm = document.getElementById('token-form');
  const tokenInput = document.getElementById('token');
  actions.hidden = false;
  let waiting = null;

  function showRemoveButtons() {
    for (const b of document.querySelectorAll('button[data-silence]')) b.hidden = false;
  }
  showRemoveButtons();

  function say(isError, ...nodes) {
    out.classList.toggle('error', isError);
    out.replaceChildren(...nodes.map(n => (typeof n === 'string' ? document.createTextNode(n) : n)));
  }
  function el(tag, text) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  tokenForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = tokenInput.value.trim();
    if (!t) return;
    sessionStorage.setItem(KEY, t);
    tokenInput.value = '';
    tokenForm.hidden = true;
    if (waiting) { const w = waiting; waiting = null; w(t); }
  });
  function token() {
    const t = sessionStorage.getItem(KEY);
    if (t) return Promise.resolve(t);
    tokenForm.hidden = false;
    tokenInput.focus();
    say(false, 'Enter the API token (from the daemon\u2019s api_token_file) to go on.');
    return new Promise((resolve) => { waiting = resolve; });
  }

  // One API call with the token in the Authorization header (never in a URL).
  async function call(method, url, json) {
    const t = await token();
    const opts = { method, headers: { Authorization: 'Bearer ' + t, Accept: 'application/json' } };
    if (json !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(json);
    }
    const r = await fetch(url, opts);
    let j = null;
    try { j = await r.json(); } catch (_) { /* no body */ }
    if (r.status === 401 || r.status === 403) {
      sessionStorage.removeItem(KEY);
      throw new Error('The API token was refused (HTTP ' + r.status + '): enter the right token and try again.');
    }
    if (!r.ok) throw new Error((j && j.error && j.error.message) || ('HTTP ' + r.status));
    return j;
  }

  function planTable(report) {
    const plan = (report && report.plan) || [];
    if (!plan.length) {
      return el('p', report && report.skipped ? 'Skipped: ' + report.skipped : 'Nothing to do: no table needs maintenance now.');
    }
    const t = el('table');
    t.className = 'plan';
    const h = t.createTHead().insertRow();
    for (const c of ['Table', 'Action', 'Reason']) h.appendChild(el('th', c));
    const b = t.createTBody();
    for (const s of plan) {
      const r = b.insertRow();
      r.appendChild(el('td', s.table));
      r.appendChild(el('td', String(s.action)));
      r.appendChild(el('td', s.skip ? s.reason + ' (will be skipped: ' + s.skip + ')' : s.reason));
    }
    return t;
  }

  function progressText(run) {
    const p = run.progress;
    if (!p || !p.steps_total) return 'Started ' + clock(Date.parse(run.started_at)) + '; planning\u2026';
    let s = 'Step ' + p.step + ' of ' + p.steps_total + ': ' + (p.action || '') + ' ' + (p.table || '');
    if (p.vacuum_phase) s += ' (' + p.vacuum_phase;
    if (p.heap_blocks_total) s += ', ' + Math.round(100 * p.heap_blocks_scanned / p.heap_blocks_total) + '% scanned';
    if (p.vacuum_phase) s += ')';
    return s;
  }

  async function follow(url, title) {
    for (;;) {
      const r = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' });
      if (!r.ok) throw new Error('Following the run failed: HTTP ' + r.status);
      const run = await r.json();
      if (run.finished_at) {
        const ok = run.outcome === 'ok';
        say(!ok, el('strong', title + ': ' + run.outcome), run.error ? ' \u2014 ' + run.error : '', planTable(run.report));
        return run;
      }
      say(false, el('strong', title + ' running'), ' \u2014 ' + progressText(run));
      await new Promise((res) => setTimeout(res, 700));
    }
  }

  async function maintain(dry) {
    const title = dry ? 'Maintenance plan (dry run)' : 'Maintenance run';
    try {
      say(false, title + ': starting\u2026');
      const enc = encodeURIComponent(target);
      const j = await call('POST', '/api/v1/targets/' + enc + '/optimize' + (dry ? '?dry_run=true' : ''));
      await follow(j.url || ('/api/v1/runs/' + encodeURIComponent(j.run_id)), title);
      if (!dry) refresh();
    } catch (e) {
      say(true, e.message);
    }
  }
  document.getElementById('dry-run').addEventListener('click', () => maintain(true));
  document.getElementById('run-now').addEventListener('click', () => {
    if (confirm('Run maintenance on ' + target + ' now?')) maintain(false);
  });

  const silenceForm = document.getElementById('silence-form');
  silenceForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(silenceForm);
    try {
      const j = await call('POST', '/api/v1/silences', {
        target, duration: String(f.get('duration')), reason: String(f.get('reason')),
      });
      say(false, 'Silenced until ' + new Date(j.ends_at).toLocaleString() + '.');
      refresh();
    } catch (err) {
      say(true, err.message);
    }
  });
  document.addEventListener('click', async (e) => {
    const b = e.target.closest && e.target.closest('button[data-silence]');
    if (!b) return;
    try {
      await call('DELETE', '/api/v1/silences/' + encodeURIComponent(b.dataset.silence));
      say(false, 'Silence removed.');
      refresh();
    } catch (err) {
      say(true, err.message);
    }
  });
})();
