"""The rating page: one HTML file, one script, one style sheet (vanilla JS, no external resources).

Kept as Python strings so they ship with the package without package-data settings. The script writes
every name and phrase with textContent, never innerHTML, so a rater called "<script>..." is just text.
"""

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cxrg reader study</title>
<link rel="stylesheet" href="/style.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <strong>cxrg reader study</strong>
  <span id="who"></span>
  <span id="progress" aria-live="polite"></span>
  <span id="rated"></span>
  <button id="signout" type="button" hidden>Change rater</button>
</header>
<main>
  <section id="login">
    <h1>Heatmap rating</h1>
    <p>Each case shows a chest radiograph, a phrase from its report and a heatmap from one grounding method.
       Rate how well the heatmap highlights the region the phrase describes. Boxes, metrics and method
       names are hidden. Every rating is saved at once; you can stop at any time and continue later
       under the same name.</p>
    <form id="login-form">
      <label for="name">Your name or rater code</label>
      <input id="name" name="name" autocomplete="off" maxlength="80" required>
      <button id="start" type="submit">Start</button>
    </form>
    <p id="login-error" class="error" role="alert"></p>
  </section>
  <section id="rate" hidden>
    <div id="viewer" tabindex="-1"><div id="stack"><img id="xray" alt="chest radiograph">
      <img id="overlay" alt="heatmap"></div></div>
    <aside>
      <p class="label">Phrase</p>
      <p id="phrase"></p>
      <div class="controls">
        <label><input type="checkbox" id="show" checked> Heatmap <kbd>H</kbd></label>
        <label>Opacity <input type="range" id="opacity" min="0" max="100" value="45"></label>
        <span class="zoom"><button type="button" id="zoom-out" title="Zoom out (-)">&minus;</button>
          <span id="zoom-level">100%</span>
          <button type="button" id="zoom-in" title="Zoom in (+)">+</button>
          <button type="button" id="zoom-fit" title="Fit (0)">Fit</button></span>
      </div>
      <div id="criteria" role="group" aria-label="Rating"></div>
      <div class="nav">
        <button type="button" id="back">&larr; Back</button>
        <button type="button" id="skip">Skip &rarr;</button>
      </div>
      <p id="status" aria-live="polite"></p>
      <p class="keys">Keys: <kbd>1</kbd>-<kbd>5</kbd> rate, <kbd>&larr;</kbd> back, <kbd>&rarr;</kbd> skip,
        <kbd>H</kbd> heatmap, <kbd>+</kbd>/<kbd>-</kbd>/<kbd>0</kbd> zoom.</p>
    </aside>
  </section>
  <section id="done" hidden>
    <h1>End of the list</h1>
    <p id="done-text"></p>
    <button type="button" id="first-open">Go to the first unrated case</button>
    <button type="button" id="done-back">&larr; Back to the last case</button>
  </section>
</main>
</body>
</html>
"""

APP_JS = r"""'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const state = {name: null, total: 0, position: 0, firstUnrated: 0, rated: 0, item: null, busy: false,
                 zoom: 1, criteria: []};

  async function api(method, url, body) {
    const options = {method, headers: {}};
    if (body !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) throw new Error(data.error || ('HTTP ' + response.status));
    return data;
  }

  function status(text, isError) {
    $('status').textContent = text;
    $('status').className = isError ? 'error' : '';
  }

  function show(section) {
    for (const id of ['login', 'rate', 'done']) $(id).hidden = (id !== section);
    $('signout').hidden = (section === 'login');
  }

  function header() {
    $('who').textContent = state.name ? 'Rater: ' + state.name : '';
    const shown = Math.min(state.position + 1, state.total);
    $('progress').textContent = state.name ? shown + ' of ' + state.total : '';
    $('rated').textContent = state.name ? '(' + state.rated + ' rated)' : '';
  }

  function buildCriteria() {
    const box = $('criteria');
    box.replaceChildren();
    for (const c of state.criteria) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'criterion';
      button.dataset.score = String(c.score);
      const head = document.createElement('span');
      head.className = 'head';
      head.textContent = c.score + ' ' + c.label;
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = c.text;
      button.append(head, text);
      button.addEventListener('click', () => rate(c.score));
      box.append(button);
    }
  }

  function applyZoom() {
    const viewer = $('viewer');
    $('stack').style.height = Math.round(state.zoom * (viewer.clientHeight - 4)) + 'px';
    $('zoom-level').textContent = Math.round(state.zoom * 100) + '%';
  }

  function setZoom(z) {
    state.zoom = Math.max(1, Math.min(8, z));
    applyZoom();
  }

  function applyOverlay() {
    $('overlay').style.opacity = String($('opacity').value / 100);
    $('overlay').style.visibility = $('show').checked ? 'visible' : 'hidden';
  }

  function markChosen(score) {
    for (const b of document.querySelectorAll('.criterion')) {
      b.classList.toggle('chosen', Number(b.dataset.score) === score);
      b.setAttribute('aria-pressed', Number(b.dataset.score) === score ? 'true' : 'false');
    }
  }

  async function load(position) {
    state.position = Math.max(0, Math.min(position, state.total));
    header();
    if (state.position >= state.total) {
      $('done-text').textContent = 'You have rated ' + state.rated + ' of ' + state.total + ' cases.';
      $('first-open').hidden = state.firstUnrated >= state.total;
      state.item = null;
      show('done');
      return;
    }
    const item = await api('GET', '/api/item?name=' + encodeURIComponent(state.name) +
                                  '&position=' + state.position);
    state.item = item;
    state.rated = item.rated;
    $('xray').src = item.image;
    $('overlay').src = item.heatmap;
    $('phrase').textContent = item.phrase;
    markChosen(item.score);
    status(item.score ? 'Your rating: ' + item.score + (item.times > 1 ? ' (changed ' + (item.times - 1) +
                        ' time(s))' : '') + '. Press another number to change it.' : '', false);
    show('rate');
    header();
    applyZoom();
    if (document.activeElement === document.body || document.activeElement === $('name')) $('viewer').focus();
  }

  async function guarded(work) {
    if (state.busy) return;
    state.busy = true;
    document.body.dataset.busy = '1';
    try { await work(); } catch (e) { status('Not saved: ' + e.message, true); }
    finally { state.busy = false; document.body.dataset.busy = '0'; }
  }

  function rate(score) {
    return guarded(async () => {
      if (!state.item) return;
      const answer = await api('POST', '/api/rate', {name: state.name, position: state.position, score});
      state.rated = answer.rated;
      state.firstUnrated = answer.first_unrated;
      await load(answer.position);
    });
  }

  function go(position) {
    return guarded(async () => {
      position = Math.max(0, Math.min(position, state.total));
      await api('POST', '/api/goto', {name: state.name, position});
      await load(position);
    });
  }

  async function signIn(name) {
    const session = await api('POST', '/api/session', {name});
    state.name = session.name;
    state.total = session.total;
    state.rated = session.rated;
    state.firstUnrated = session.first_unrated;
    try { localStorage.setItem('cxrg-study-rater', session.name); } catch (e) { /* private mode */ }
    await load(session.position);
  }

  async function init() {
    const study = await api('GET', '/api/study');
    state.criteria = study.criteria;
    buildCriteria();
    try { $('name').value = localStorage.getItem('cxrg-study-rater') || ''; } catch (e) { /* ignore */ }
    $('login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      $('login-error').textContent = '';
      guarded(() => signIn($('name').value)).then(() => {
        if (!state.name) $('login-error').textContent = $('status').textContent;
      });
    });
    $('signout').addEventListener('click', () => {
      state.name = null; state.item = null; header(); show('login'); $('name').focus();
    });
    $('opacity').addEventListener('input', applyOverlay);
    $('show').addEventListener('change', applyOverlay);
    $('zoom-in').addEventListener('click', () => setZoom(state.zoom * 1.5));
    $('zoom-out').addEventListener('click', () => setZoom(state.zoom / 1.5));
    $('zoom-fit').addEventListener('click', () => setZoom(1));
    $('back').addEventListener('click', () => go(state.position - 1));
    $('skip').addEventListener('click', () => go(state.position + 1));
    $('first-open').addEventListener('click', () => go(state.firstUnrated));
    $('done-back').addEventListener('click', () => go(state.total - 1));
    $('viewer').addEventListener('wheel', (event) => {
      if (!event.ctrlKey) return;
      event.preventDefault();
      setZoom(state.zoom * (event.deltaY < 0 ? 1.25 : 0.8));
    }, {passive: false});
    window.addEventListener('resize', applyZoom);
    document.addEventListener('keydown', (event) => {
      if (!state.name || event.target.tagName === 'INPUT' && event.target.type !== 'range' &&
          event.target.type !== 'checkbox') return;
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.target.type === 'range' && event.key.startsWith('Arrow')) return;
      const key = event.key;
      if (state.item && key >= '1' && key <= '5') { rate(Number(key)); }
      else if (key === 'ArrowLeft' || key === 'Backspace') { go(state.position - 1); }
      else if (key === 'ArrowRight') { if (state.item) go(state.position + 1); }
      else if (key === 'h' || key === 'H') { $('show').checked = !$('show').checked; applyOverlay(); }
      else if (key === '+' || key === '=') { setZoom(state.zoom * 1.5); }
      else if (key === '-') { setZoom(state.zoom / 1.5); }
      else if (key === '0') { setZoom(1); }
      else return;
      event.preventDefault();
    });
    applyOverlay();
    show('login');
    $('name').focus();
    document.body.dataset.busy = '0';
  }

  init().catch((e) => { $('login-error').textContent = 'Cannot reach the study server: ' + e.message; });
})();
"""

STYLE_CSS = """
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, sans-serif; background: #111; color: #eee; }
header { display: flex; gap: 1.2em; align-items: center; padding: 0.5em 1em; background: #222;
         height: 2.6em; }
header #progress { font-weight: bold; }
header #signout { margin-left: auto; }
main { height: calc(100vh - 2.6em); }
section { height: 100%; }
#login, #done { max-width: 40em; margin: 0 auto; padding: 2em 1em; }
#login input { font-size: 1.1em; padding: 0.3em; width: 16em; }
#rate { display: flex; }
#viewer { flex: 1; overflow: auto; background: #000; text-align: center; }
#stack { position: relative; display: inline-block; height: 100%; }
#xray { height: 100%; width: auto; display: block; }
#overlay { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; }
aside { width: 24em; padding: 1em; overflow-y: auto; background: #1b1b1b; }
.label { margin: 0; color: #aaa; font-size: 0.85em; text-transform: uppercase; }
#phrase { font-size: 1.25em; margin-top: 0.2em; }
.controls { display: flex; flex-wrap: wrap; gap: 0.6em 1em; align-items: center; margin: 1em 0; }
#criteria { display: flex; flex-direction: column; gap: 0.4em; }
.criterion { text-align: left; padding: 0.5em 0.7em; border: 1px solid #555; border-radius: 6px;
             background: #2a2a2a; color: #eee; cursor: pointer; }
.criterion:hover { border-color: #9cf; }
.criterion.chosen { background: #235; border-color: #9cf; }
.criterion .head { display: block; font-weight: bold; }
.criterion .text { display: block; font-size: 0.85em; color: #ccc; }
.nav { display: flex; justify-content: space-between; margin: 1em 0; }
button { font: inherit; padding: 0.3em 0.8em; }
.error { color: #f88; }
.keys { color: #999; font-size: 0.85em; }
kbd { border: 1px solid #666; border-radius: 3px; padding: 0 0.3em; font-size: 0.85em; }
"""
