// optvq serve: the page's script. Talks to the local JSON API only.
'use strict';

const EXAMPLES = ['0-boot', '1-pullover', '2-trouser', '3-shirt', '4-sneaker', '5-bag'];
const $ = (id) => document.getElementById(id);
let models = [];
let lastImage = null; // the Blob last reconstructed, re-sent when a setting changes
let lastName = 'image';
let requestSeq = 0;
window.optvqLast = null; // the last /api/reconstruct answer (the browser test reads it)
window.optvqToy = null;

function setStatus(text, isError) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', !!isError);
}

// ---- colours ------------------------------------------------------------------

function hslToRgb(h, s, l) {
  const a = s * Math.min(l, 1 - l);
  const f = (n) => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

// A stable colour per code: golden-angle hues, three lightness levels.
function codeColor(code) {
  return hslToRgb((code * 137.508) % 360, 0.55 + 0.15 * (code % 3), 0.38 + 0.12 * (Math.floor(code / 3) % 3));
}

// ---- reconstruct ----------------------------------------------------------------

function currentModel() {
  return models.find((m) => m.name === $('model').value) || models[0];
}

function applyModelDefaults() {
  const m = currentModel();
  if (!m) return;
  $('assign').value = m.assign;
  $('epsilon').value = m.epsilon;
  $('n_iters').value = m.n_iters;
  $('normalize').value = m.normalize;
}

async function loadModels() {
  try {
    const r = await fetch('/api/models');
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
    models = data.models;
    const sel = $('model');
    sel.textContent = '';
    for (const m of models) {
      const o = document.createElement('option');
      o.value = m.name;
      let text = `${m.name} (${m.resolution}x${m.resolution}, ${m.n_e} codes x ${m.num_head} heads`;
      if (m.eval && typeof m.eval.psnr === 'number') text += `, test PSNR ${m.eval.psnr.toFixed(2)} dB`;
      o.textContent = text + ')';
      sel.appendChild(o);
    }
    applyModelDefaults();
    setStatus(`ready: ${models.length} model${models.length === 1 ? '' : 's'}`);
  } catch (e) {
    setStatus(`cannot list the models: ${e.message}`, true);
  }
}

async function reconstruct(blob, name) {
  if (!blob) return;
  lastImage = blob;
  lastName = name || 'image';
  const seq = ++requestSeq;
  const form = new FormData();
  form.append('image', blob, lastName);
  form.append('model', $('model').value);
  form.append('assign', $('assign').value);
  form.append('epsilon', $('epsilon').value);
  form.append('n_iters', $('n_iters').value);
  form.append('normalize', $('normalize').value);
  document.body.dataset.state = 'working';
  setStatus(`reconstructing ${lastName}…`);
  let data;
  try {
    const r = await fetch('/api/reconstruct', { method: 'POST', body: form });
    data = await r.json();
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  } catch (e) {
    if (seq !== requestSeq) return;
    document.body.dataset.state = 'error';
    setStatus(`error: ${e.message}`, true);
    return;
  }
  if (seq !== requestSeq) return; // a newer request is on its way
  render(data);
  window.optvqLast = data;
  document.body.dataset.state = 'done';
  document.body.dataset.runs = String(Number(document.body.dataset.runs) + 1);
  setStatus(`${lastName}: ${data.model}, ${data.assign}, ${(data.seconds * 1000).toFixed(1)} ms`);
}

function fmt(v, digits, unit) {
  return typeof v === 'number' ? v.toFixed(digits) + (unit || '') : '–';
}

function render(d) {
  $('results').classList.remove('hidden');
  $('img-original').src = 'data:image/png;base64,' + d.original;
  $('img-recon').src = 'data:image/png;base64,' + d.reconstruction;
  if (d.error_map) $('img-error').src = 'data:image/png;base64,' + d.error_map;
  $('error-max').textContent = `(white = ${d.error_max.toFixed(3)})`;
  $('psnr').textContent = fmt(d.psnr, 2, ' dB');
  $('ssim').textContent = fmt(d.ssim, 4);
  $('lpips').textContent = fmt(d.lpips, 4);
  $('seconds').textContent = (d.seconds * 1000).toFixed(1) + ' ms';
  $('codes-used').textContent = `${d.codes_used} of ${d.n_e}`;
  $('perplexity').textContent = d.perplexity.toFixed(1);
  renderTokenMaps(d);
  renderHistogram(d);
  const dlTokens = $('dl-tokens');
  if (dlTokens.href.startsWith('blob:')) URL.revokeObjectURL(dlTokens.href);
  window.optvqTokensNpy = npyInt64(d.tokens, [1].concat(d.token_shape));
  dlTokens.href = URL.createObjectURL(window.optvqTokensNpy);
  const base = lastName.replace(/\.[^.]*$/, '');
  dlTokens.download = `${base}_tokens.npy`;
  $('dl-recon').href = 'data:image/png;base64,' + d.reconstruction;
  $('dl-recon').download = `${base}_rec.png`;
}

function renderTokenMaps(d) {
  const box = $('token-maps');
  box.textContent = '';
  d.tokens.forEach((map, head) => {
    const h = map.length, w = map[0].length;
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    c.className = 'token-map';
    const ctx = c.getContext('2d');
    const img = ctx.createImageData(w, h);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const [r, g, b] = codeColor(map[y][x]);
        const i = 4 * (y * w + x);
        img.data[i] = r; img.data[i + 1] = g; img.data[i + 2] = b; img.data[i + 3] = 255;
      }
    ctx.putImageData(img, 0, 0);
    c.title = map.map((row) => row.join(' ')).join('\n');
    const fig = document.createElement('figure');
    const cap = document.createElement('figcaption');
    cap.textContent = `head ${head}`;
    fig.appendChild(c);
    fig.appendChild(cap);
    box.appendChild(fig);
  });
}

function renderHistogram(d) {
  const counts = new Map();
  for (const map of d.tokens) for (const row of map) for (const t of row) counts.set(t, (counts.get(t) || 0) + 1);
  const c = $('histogram'), ctx = c.getContext('2d');
  ctx.clearRect(0, 0, c.width, c.height);
  let max = 0, top = -1;
  for (const [code, n] of counts) if (n > max) { max = n; top = code; }
  const bw = Math.max(1, c.width / d.n_e);
  for (const [code, n] of counts) {
    const [r, g, b] = codeColor(code);
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    const h = Math.max(2, (c.height - 16) * n / max);
    ctx.fillRect(code * c.width / d.n_e, c.height - h, bw, h);
  }
  ctx.fillStyle = '#667085';
  ctx.font = '12px sans-serif';
  ctx.fillText(`code 0`, 2, 12);
  ctx.fillText(`${d.n_e - 1}`, c.width - 30, 12);
  $('hist-note').textContent =
    `(${counts.size} distinct codes of ${d.n_e}; code ${top} most, ${max} of ${d.tokens.length * d.tokens[0].length * d.tokens[0][0].length} tokens)`;
}

// A NumPy .npy (version 1.0) of int64 values, shape as given.
function npyInt64(nested, shape) {
  const flat = nested.flat(Infinity);
  let header = `{'descr': '<i8', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const head = new Uint8Array(10 + header.length);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 255, header.length >> 8]);
  for (let i = 0; i < header.length; i++) head[10 + i] = header.charCodeAt(i);
  const data = new BigInt64Array(flat.map((v) => BigInt(v)));
  return new Blob([head, data.buffer], { type: 'application/octet-stream' });
}

function setupReconstruct() {
  const ex = $('examples');
  for (const name of EXAMPLES) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'example';
    b.dataset.name = name;
    b.title = name.replace(/^\d+-/, '');
    const img = document.createElement('img');
    img.src = `/examples/${name}.png`;
    img.alt = b.title;
    b.appendChild(img);
    b.addEventListener('click', async () => {
      const r = await fetch(`/examples/${name}.png`);
      reconstruct(await r.blob(), `${name}.png`);
    });
    ex.appendChild(b);
  }
  $('file').addEventListener('change', (e) => {
    const f = e.target.files[0];
    if (f) reconstruct(f, f.name);
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer.files[0];
    if (f) reconstruct(f, f.name);
  });
  $('model').addEventListener('change', () => { applyModelDefaults(); reconstruct(lastImage, lastName); });
  for (const id of ['assign', 'epsilon', 'n_iters', 'normalize'])
    $(id).addEventListener('change', () => reconstruct(lastImage, lastName));
  $('reset').addEventListener('click', () => { applyModelDefaults(); reconstruct(lastImage, lastName); });
}

// ---- the 2-D toy ------------------------------------------------------------------

const toy = { data: null, frame: 0, playing: false, timer: null, bounds: null };

function toyBounds(d) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  const add = (a) => {
    for (let i = 0; i + 1 < a.length; i += 2) {
      x0 = Math.min(x0, a[i]); x1 = Math.max(x1, a[i]);
      y0 = Math.min(y0, a[i + 1]); y1 = Math.max(y1, a[i + 1]);
    }
  };
  add(d.points);
  for (const f of d.frames) { add(f.vanilla.codes); add(f.optvq.codes); }
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, half = Math.max(x1 - x0, y1 - y0, 1e-6) * 0.53;
  return { x0: cx - half, y0: cy - half, size: 2 * half };
}

function drawToyPanel(canvas, title, color, run, d, step) {
  const ctx = canvas.getContext('2d'), W = canvas.width, H = canvas.height, top = 44;
  const b = toy.bounds, s = (Math.min(W, H - top) - 10) / b.size;
  const px = (x) => 5 + (x - b.x0) * s, py = (y) => top + (H - top - 5) - (y - b.y0) * s;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = '#1d2433';
  ctx.font = 'bold 15px sans-serif';
  ctx.fillText(title, 8, 18);
  ctx.font = '13px sans-serif';
  ctx.fillStyle = '#667085';
  ctx.fillText(`step ${step}   codes used ${run.used}/${d.codes_count}   loss ${run.loss.toFixed(4)}`, 8, 36);
  const used = new Set(run.assign);
  ctx.strokeStyle = color.replace('rgb', 'rgba').replace(')', ',0.25)');
  ctx.lineWidth = 1;
  for (let i = 0; i < d.points_count; i++) {
    const k = run.assign[i];
    ctx.beginPath();
    ctx.moveTo(px(d.points[2 * i]), py(d.points[2 * i + 1]));
    ctx.lineTo(px(run.codes[2 * k]), py(run.codes[2 * k + 1]));
    ctx.stroke();
  }
  ctx.fillStyle = '#98a2b3';
  for (let i = 0; i < d.points_count; i++) {
    ctx.beginPath();
    ctx.arc(px(d.points[2 * i]), py(d.points[2 * i + 1]), 2.5, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.lineWidth = 2;
  for (let k = 0; k < d.codes_count; k++) {
    ctx.beginPath();
    ctx.arc(px(run.codes[2 * k]), py(run.codes[2 * k + 1]), 5, 0, 2 * Math.PI);
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    if (used.has(k)) ctx.fill(); else ctx.stroke();
  }
}

function drawToyChart(d, upto) {
  const c = $('toy-chart'), ctx = c.getContext('2d'), W = c.width, H = c.height, L = 40, B = 22;
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = '#d0d5dd';
  ctx.strokeRect(L, 6, W - L - 8, H - B - 6);
  ctx.fillStyle = '#667085';
  ctx.font = '12px sans-serif';
  ctx.fillText(String(d.codes_count), 4, 16);
  ctx.fillText('0', 4, H - B);
  ctx.fillText(`step ${d.steps}`, W - 70, H - 6);
  const x = (step) => L + (W - L - 8) * (d.steps ? step / d.steps : 0);
  const y = (used) => 6 + (H - B - 6) * (1 - used / d.codes_count);
  for (const [key, color] of [['vanilla', 'rgb(204,51,51)'], ['optvq', 'rgb(51,153,51)']]) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    d.frames.slice(0, upto + 1).forEach((f, i) => {
      if (i === 0) ctx.moveTo(x(f.step), y(f[key].used)); else ctx.lineTo(x(f.step), y(f[key].used));
    });
    ctx.stroke();
  }
}

function showToyFrame(i) {
  const d = toy.data;
  toy.frame = i;
  const f = d.frames[i];
  drawToyPanel($('toy-vanilla'), 'Vanilla VQ (nearest code)', 'rgb(204,51,51)', f.vanilla, d, f.step);
  drawToyPanel($('toy-optvq'), 'OptVQ (Sinkhorn)', 'rgb(51,153,51)', f.optvq, d, f.step);
  drawToyChart(d, i);
  $('toy-frame').value = String(i);
  document.body.dataset.toyFrame = String(i);
}

function toyPlay(on) {
  toy.playing = on;
  $('toy-play').textContent = on ? 'Pause' : 'Play';
  clearInterval(toy.timer);
  if (!on) return;
  toy.timer = setInterval(() => {
    if (toy.frame + 1 >= toy.data.frames.length) { toyPlay(false); return; }
    showToyFrame(toy.frame + 1);
  }, 70);
}

async function runToy() {
  const num = (id) => Number($(id).value);
  const body = { points: num('toy-points'), codes: num('toy-codes'), seed: num('toy-seed'), steps: num('toy-steps'),
                 epsilon: num('toy-epsilon') };
  setStatus('training the toy…');
  $('toy-run').disabled = true;
  try {
    const r = await fetch('/api/toy', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                        body: JSON.stringify(body) });
    const d = await r.json();
    if (!r.ok) throw new Error(d.error || `HTTP ${r.status}`);
    toy.data = d;
    toy.bounds = toyBounds(d);
    window.optvqToy = d;
    $('toy-frame').max = String(d.frames.length - 1);
    $('toy-frame').disabled = false;
    $('toy-play').disabled = false;
    showToyFrame(0);
    toyPlay(true);
    const last = d.frames[d.frames.length - 1];
    setStatus(`toy: ${d.steps} steps in ${(d.seconds * 1000).toFixed(0)} ms; codes used at the end: ` +
              `vanilla VQ ${last.vanilla.used}/${d.codes_count}, OptVQ ${last.optvq.used}/${d.codes_count}`);
    document.body.dataset.toyRuns = String(Number(document.body.dataset.toyRuns) + 1);
  } catch (e) {
    setStatus(`toy error: ${e.message}`, true);
  } finally {
    $('toy-run').disabled = false;
  }
}

function setupToy() {
  $('toy-run').addEventListener('click', runToy);
  $('toy-play').addEventListener('click', () => {
    if (!toy.playing && toy.frame + 1 >= toy.data.frames.length) showToyFrame(0);
    toyPlay(!toy.playing);
  });
  $('toy-frame').addEventListener('input', (e) => { toyPlay(false); showToyFrame(Number(e.target.value)); });
}

function setupTabs() {
  const show = (which) => {
    $('panel-recon').classList.toggle('hidden', which !== 'recon');
    $('panel-toy').classList.toggle('hidden', which !== 'toy');
    $('tab-recon').classList.toggle('active', which === 'recon');
    $('tab-toy').classList.toggle('active', which === 'toy');
    if (which === 'toy' && !toy.data) runToy();
  };
  $('tab-recon').addEventListener('click', () => show('recon'));
  $('tab-toy').addEventListener('click', () => show('toy'));
}

setupTabs();
setupReconstruct();
setupToy();
loadModels();
