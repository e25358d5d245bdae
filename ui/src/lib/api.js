// Thin client for the gateway's admin API. The API lives at the origin root
// (the UI is only mounted under /_/), and every error body is
// {"error": "..."}, which is surfaced verbatim so operators see the
// server's own message (clients match substrings such as "not found").

const TOKEN_KEY = 'peat-gateway.admin-token';

/** Error raised for any non-2xx response. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   */
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }

  /** True when the credentials were missing or rejected. */
  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

// sessionStorage keeps the token for this tab only: closing the tab signs out,
// and it never travels to other tabs or survives a browser restart.
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

/** @param {string} token */
export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** @type {Set<(e: ApiError) => void>} */
const authListeners = new Set();

/**
 * Registers a callback for 401/403 responses, so the app can bring back
 * the sign-in screen wherever the rejection happened.
 * @param {(e: ApiError) => void} fn
 */
export function onAuthError(fn) {
  authListeners.add(fn);
  return () => authListeners.delete(fn);
}

/**
 * Encodes each path segment; ids are restricted server-side, but document ids
 * and serials come from data and must not be able to alter the route.
 * @param {TemplateStringsArray} strings
 * @param {...(string|number)} values
 */
export function path(strings, ...values) {
  return strings.reduce(
    (acc, s, i) => acc + s + (i < values.length ? encodeURIComponent(String(values[i])) : ''),
    ''
  );
}

/**
 * @param {string} method
 * @param {string} url
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function request(method, url, body) {
  /** @type {Record<string,string>} */
  const headers = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';

  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin'
    });
  } catch (err) {
    throw new ApiError(0, `Network error: ${err instanceof Error ? err.message : String(err)}`);
  }

  const text = await res.text();
  if (!res.ok) {
    const err = new ApiError(res.status, errorMessage(res, text));
    if (err.isAuth) authListeners.forEach((fn) => fn(err));
    throw err;
  }
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * @param {Response} res
 * @param {string} text
 */
function errorMessage(res, text) {
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed.error === 'string') return parsed.error;
  } catch {
    // Not JSON: fall through to the raw text or the status line.
  }
  return text.trim() || `${res.status} ${res.statusText || 'request failed'}`;
}

export const api = {
  /** @param {string} url */
  get: (url) => request('GET', url),
  /** @param {string} url @param {unknown} [body] */
  post: (url, body) => request('POST', url, body),
  /** @param {string} url @param {unknown} body */
  patch: (url, body) => request('PATCH', url, body),
  /** @param {string} url */
  del: (url) => request('DELETE', url)
};
