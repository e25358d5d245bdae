// Display helpers shared by the pages.

/** @param {number | null | undefined} ms epoch milliseconds */
export function fmtTime(ms) {
  if (ms === null || ms === undefined || ms === 0) return '—';
  const d = new Date(ms);
  // ISO-like UTC text: unambiguous for operators in different time zones.
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/**
 * Splits the externally tagged sink enum into a kind and its target.
 * @param {Record<string, any>} sinkType
 */
export function sinkKind(sinkType) {
  const [kind, cfg] = Object.entries(sinkType || {})[0] || ['?', {}];
  const target = cfg?.subject_prefix ?? cfg?.topic ?? cfg?.url ?? '';
  return { kind, target };
}

/**
 * The reference's token status rule: revoked, then expired, then exhausted.
 * @param {{revoked: boolean, expires_at: number|null, max_uses: number|null, uses: number}} t
 */
export function tokenStatus(t, now = Date.now()) {
  if (t.revoked) return 'Revoked';
  if (t.expires_at !== null && t.expires_at !== undefined && t.expires_at <= now) return 'Expired';
  if (t.max_uses !== null && t.max_uses !== undefined && t.uses >= t.max_uses) return 'Exhausted';
  return 'Active';
}

/**
 * Shows only the ends of a token id: the full id is the enrollment secret.
 * @param {string} id
 */
export function maskToken(id) {
  if (!id || id.length < 14) return id;
  return `${id.slice(0, 5)}…${id.slice(-4)}`;
}

/** Gateway permission bits (see the API docs). */
export const PERMISSIONS = [
  { bit: 0x01, name: 'RELAY' },
  { bit: 0x02, name: 'EMERGENCY' },
  { bit: 0x04, name: 'ENROLL' },
  { bit: 0x08, name: 'ADMIN' }
];

/** @param {number} mask */
export function fmtPermissions(mask) {
  const names = PERMISSIONS.filter((p) => (mask & p.bit) !== 0).map((p) => p.name);
  return names.length ? names.join(', ') : 'none';
}

/**
 * @param {Record<string, any>} decision externally tagged EnrollmentDecision
 */
export function fmtDecision(decision) {
  if (decision?.Approved) return { ok: true, text: `Approved (${decision.Approved.tier})` };
  if (decision?.Denied) return { ok: false, text: `Denied: ${decision.Denied.reason}` };
  return { ok: false, text: JSON.stringify(decision) };
}
