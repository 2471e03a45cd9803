"""Keyboard ranking and zoom-to-compare on the Annotate tab, as browser code in a ``gr.HTML``.

Each candidate's column (``#rg-slot-N``) is one Tab stop: its rank choices are taken out of the Tab
order. With an image focused, a number key gives it that rank (the choice is clicked, so the draft
and the server see an ordinary choice), the arrow keys move to the previous or next image and
Enter submits the ranking. A new task focuses its first image. Clicking an image shows every
candidate large side by side (the clicked one outlined); Escape or a click closes that view.

The code runs as the component's ``js_on_load`` (a function built from a string, which the
app's Content-Security-Policy allows: see ``webui.security``).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

KEYS_JS = r"""
if (!window.__rgKeys) {
  window.__rgKeys = true;
  const slots = () => [...document.querySelectorAll('[id^="rg-slot-"]')]
    .filter((el) => el.offsetParent !== null);
  let lastPrompt = '';
  const tidy = () => {
    document.querySelectorAll('[id^="rg-rank-"] input[type=radio]').forEach((i) => { i.tabIndex = -1; });
    document.querySelectorAll('[id^="rg-slot-"]').forEach((el) => {
      if (el.tabIndex !== 0) {
        const n = Number(el.id.split('-').pop()) + 1;
        el.tabIndex = 0;
        el.setAttribute('role', 'group');
        el.setAttribute('aria-label', `Image ${n}: number keys rank it, arrows move, Enter submits`);
      }
    });
    const p = document.querySelector('#rg-task-prompt');
    const text = p ? p.innerText : '';
    if (text !== lastPrompt) {
      lastPrompt = text;
      const first = slots()[0];
      const a = document.activeElement;
      const busy = a && a.matches('input[type=text], input[type=password], textarea');
      if (first && text.includes('Prompt:') && !busy) first.focus({ preventScroll: true });
    }
  };
  let pending = false;
  new MutationObserver(() => {
    if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; tidy(); }); }
  }).observe(document.body, { subtree: true, childList: true, characterData: true });
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    const slot = t && t.closest ? t.closest('[id^="rg-slot-"]') : null;
    if (!slot || t.matches('input[type=text], textarea')) return;
    const all = slots();
    const i = all.indexOf(slot);
    if (/^[1-9]$/.test(e.key)) {
      const idx = slot.id.split('-').pop();
      const choice = document.querySelector(`#rg-rank-${idx} input[type=radio][value="${e.key}"]`);
      if (choice) { e.preventDefault(); if (!choice.checked) choice.click(); slot.focus(); }
    } else if (e.key === 'ArrowRight' || e.key === 'ArrowDown') {
      e.preventDefault(); (all[i + 1] || all[0]).focus();
    } else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') {
      e.preventDefault(); (all[i - 1] || all[all.length - 1]).focus();
    } else if (e.key === 'Enter' && (t === slot || t.matches('input[type=radio]'))) {
      const b = document.querySelector('#rg-submit');
      if (b && b.offsetParent !== null) { e.preventDefault(); b.click(); }
    }
  });
  const closeZoom = () => { const z = document.querySelector('#rg-zoom'); if (z) z.remove(); };
  document.addEventListener('click', (e) => {
    const img = e.target && e.target.closest ? e.target.closest('[id^="rg-cand-"] img') : null;
    if (!img) return;
    closeZoom();
    const z = document.createElement('div');
    z.id = 'rg-zoom';
    z.tabIndex = -1;
    z.style.cssText = 'position:fixed;inset:0;z-index:1000;background:rgba(0,0,0,.85);display:flex;'
      + 'gap:12px;align-items:center;justify-content:center;padding:16px;cursor:zoom-out';
    document.querySelectorAll('[id^="rg-cand-"] img').forEach((im) => {
      if (im.offsetParent === null) return;
      const n = Number(im.closest('[id^="rg-cand-"]').id.split('-').pop()) + 1;
      const fig = document.createElement('figure');
      fig.style.cssText = 'margin:0;color:#fff;text-align:center;flex:1;min-width:0';
      const big = document.createElement('img');
      big.src = im.src;
      big.alt = `Image ${n}`;
      big.style.cssText = 'width:100%;max-height:85vh;object-fit:contain;image-rendering:pixelated;'
        + (im === img ? 'outline:4px solid #4f7cff' : '');
      const cap = document.createElement('figcaption');
      cap.textContent = `Image ${n}`;
      fig.append(big, cap);
      z.append(fig);
    });
    z.addEventListener('click', closeZoom);
    document.body.append(z);
    z.focus();
  }, true);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeZoom(); });
}
"""


def keyboard_helper() -> Any:
    """An empty ``gr.HTML`` that installs the keyboard ranking and zoom code once per page."""
    return gr.HTML("", js_on_load=KEYS_JS, elem_id="rg-keys", container=False, padding=False)
