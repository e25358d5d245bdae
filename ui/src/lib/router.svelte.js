// Minimal history-API router. The gateway answers every /_/... path with
// index.html (status 200), so deep links and reloads land back here.

export const BASE = '/_';

export const route = $state({ path: currentPath() });

function currentPath() {
  let p = location.pathname;
  if (p.startsWith(BASE)) p = p.slice(BASE.length);
  return p === '' ? '/' : p;
}

/**
 * Navigates within the SPA.
 * @param {string} to path relative to the base, e.g. "/orgs/acme"
 * @param {{replace?: boolean}} [opts]
 */
export function navigate(to, opts = {}) {
  const url = BASE + to;
  if (opts.replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route.path = currentPath();
  // Move focus to the main landmark so keyboard and screen-reader users
  // land on the new page's content rather than the link they left.
  queueMicrotask(() => document.getElementById('main')?.focus());
}

/** Builds an href under the base path. @param {string} to */
export function href(to) {
  return BASE + to;
}

addEventListener('popstate', () => {
  route.path = currentPath();
});

/**
 * Intercepts plain left clicks on in-app links; modified clicks (new tab,
 * etc.) keep the browser's behaviour.
 * @param {MouseEvent} e
 */
export function interceptLinks(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = /** @type {Element} */ (e.target).closest?.('a[href]');
  if (!a || a.getAttribute('target') || a.hasAttribute('download')) return;
  const url = new URL(/** @type {HTMLAnchorElement} */ (a).href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE + '/')) return;
  e.preventDefault();
  navigate(url.pathname.slice(BASE.length) + url.search);
}

/**
 * Splits the current path into segments, decoded.
 * @param {string} p
 */
export function segments(p) {
  return p
    .split('?')[0]
    .split('/')
    .filter(Boolean)
    .map((s) => decodeURIComponent(s));
}
