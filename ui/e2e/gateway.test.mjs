// End-to-end test of the embedded admin UI: starts the real gateway binary
// with admin auth on, drives Debian's Chromium through playwright-core and
// checks the main flows (sign-in, org, formation with its mesh_id, token).
//
// Run with `npm test` in ui/ after `make ui` and building ../bin/peat-gateway.
// Environment overrides: PEAT_GATEWAY_BIN (binary path), CHROMIUM_PATH.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = resolve(process.env.PEAT_GATEWAY_BIN || join(here, '..', '..', 'bin', 'peat-gateway'));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = join(here, 'artifacts');
const TOKEN = randomBytes(24).toString('hex');
const ORG = `e2e-${randomBytes(3).toString('hex')}`;
const APP = 'logistics';

/** @type {import('node:child_process').ChildProcess | undefined} */
let gateway;
let gatewayLog = '';
let baseURL = '';
/** @type {string[]} */
const tmpDirs = [];
/** @type {import('playwright-core').BrowserContext | undefined} */
let context;
/** @type {import('playwright-core').Page} */
let page;

function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (srv.address());
      srv.close(() => res(port));
    });
  });
}

/** Polls GET /ready until 200; fails early if the gateway process dies. */
async function waitReady(timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (gateway?.exitCode !== null) {
      throw new Error(`peat-gateway exited with code ${gateway?.exitCode} before it was ready:\n${gatewayLog}`);
    }
    try {
      const res = await fetch(`${baseURL}/ready`);
      if (res.status === 200) return;
      last = `status ${res.status}: ${await res.text()}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`peat-gateway not ready after ${timeoutMs} ms (last: ${last}):\n${gatewayLog}`);
}

/** Calls the admin API directly, to cross-check what the UI shows. */
async function apiGet(path) {
  const res = await fetch(baseURL + path, { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200, `GET ${path}: ${await res.clone().text()}`);
  return res.json();
}

/**
 * Wraps a test body so that a failure leaves a screenshot and the gateway's
 * log in e2e/artifacts/ for CI to keep.
 * @param {string} name
 * @param {() => Promise<void>} fn
 */
function step(name, fn) {
  return async () => {
    try {
      await fn();
    } catch (err) {
      mkdirSync(ARTIFACTS, { recursive: true });
      const file = name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
      if (page) {
        await page.screenshot({ path: join(ARTIFACTS, `${file}.png`), fullPage: true }).catch(() => {});
      }
      writeFileSync(join(ARTIFACTS, 'gateway.log'), gatewayLog);
      throw err;
    }
  };
}

describe('admin UI against the real gateway', { timeout: 180_000 }, () => {
  before(async () => {
    if (!existsSync(BIN)) {
      throw new Error(
        `peat-gateway binary not found at ${BIN}. Build it first (from the repository root: ` +
          '`make ui` then `go build -o bin/peat-gateway ./cmd/peat-gateway`), or set PEAT_GATEWAY_BIN.'
      );
    }
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium not found at ${CHROMIUM}. Install Debian's package: ` +
          '`apt-get update && apt-get install -y chromium` (or set CHROMIUM_PATH). No browser is downloaded.'
      );
    }

    const dataDir = mkdtempSync(join(tmpdir(), 'peat-e2e-data-'));
    tmpDirs.push(dataDir);
    const port = await freePort();
    baseURL = `http://127.0.0.1:${port}`;
    gateway = spawn(BIN, [], {
      env: {
        ...process.env,
        PEAT_GATEWAY_BIND: `127.0.0.1:${port}`,
        PEAT_GATEWAY_DATA_DIR: dataDir,
        PEAT_ADMIN_TOKEN: TOKEN
      },
      stdio: ['ignore', 'pipe', 'pipe']
    });
    gateway.stdout?.on('data', (d) => (gatewayLog += d));
    gateway.stderr?.on('data', (d) => (gatewayLog += d));
    await waitReady();

    const shell = await (await fetch(`${baseURL}/_/`)).text();
    if (shell.includes('Admin UI not built')) {
      throw new Error(
        `${BIN} was built without the UI. Run \`make ui\` (npm ci && npm run build in ui/) before building the binary.`
      );
    }

    const userDataDir = mkdtempSync(join(tmpdir(), 'peat-e2e-chromium-'));
    tmpDirs.push(userDataDir);
    // A persistent context is how playwright takes an explicit, fresh
    // --user-data-dir; the flags keep Chromium off the (closed) network.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync'
      ],
      baseURL,
      viewport: { width: 1280, height: 900 }
    });
    context.setDefaultTimeout(15_000);
    page = context.pages()[0] ?? (await context.newPage());
    // Every confirm() in the UI is accepted; the flows here do not delete.
    page.on('dialog', (d) => d.accept());
  });

  after(async () => {
    await context?.close().catch(() => {});
    if (gateway && gateway.exitCode === null) {
      const exited = new Promise((r) => gateway?.once('exit', r));
      gateway.kill('SIGTERM');
      const timer = setTimeout(() => gateway?.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
  });

  test('/_ redirects to the SPA and the UI asks for the admin token', step('sign-in page', async () => {
    await page.goto('/_');
    assert.match(new URL(page.url()).pathname, /^\/_\//);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.ok(await page.getByLabel('Admin token').isVisible());
  }));

  test('a wrong token is rejected with the server message', step('wrong token', async () => {
    await page.getByLabel('Admin token').fill('not-the-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Invalid admin token' }).waitFor();
    assert.ok(await page.getByRole('heading', { name: 'Sign in' }).isVisible());
  }));

  test('signing in with the admin token shows the organizations', step('sign in', async () => {
    await page.getByLabel('Admin token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Organizations', exact: true }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('peat-gateway.admin-token')), TOKEN);
  }));

  test('creates an organization through the form', step('create org', async () => {
    await page.getByLabel('Organization ID').fill(ORG);
    await page.getByLabel('Display name').fill('E2E Org');
    await page.getByRole('button', { name: 'Create organization' }).click();
    await page.waitForURL(`**/_/orgs/${ORG}`);
    await page.getByRole('heading', { name: /E2E Org/ }).waitFor();
    const org = await apiGet(`/orgs/${ORG}`);
    assert.equal(org.display_name, 'E2E Org');
  }));

  test('an invalid org id shows the API error', step('org validation', async () => {
    await page.goto('/_/orgs');
    await page.getByLabel('Organization ID').fill(ORG);
    await page.getByLabel('Display name').fill('dup');
    await page.getByRole('button', { name: 'Create organization' }).click();
    await page.getByRole('alert').filter({ hasText: 'already exists' }).waitFor();
  }));

  test('creates a formation and shows its 8-hex mesh_id', step('create formation', async () => {
    await page.getByRole('link', { name: ORG }).click();
    await page.getByLabel('App ID').fill(APP);
    await page.getByLabel('Enrollment policy').selectOption('Open');
    await page.getByRole('button', { name: 'Create formation' }).click();
    const cell = page.locator(`tr[data-app="${APP}"] [data-field="mesh_id"]`);
    await cell.waitFor();
    const meshId = (await cell.textContent())?.trim() ?? '';
    assert.match(meshId, /^[0-9A-Fa-f]{8}$/);
    const row = page.locator(`tr[data-app="${APP}"]`);
    assert.match((await row.textContent()) ?? '', /Open/);
    assert.match((await row.textContent()) ?? '', /Active/);
    const formations = await apiGet(`/orgs/${ORG}/formations`);
    assert.equal(formations.find((f) => f.app_id === APP)?.mesh_id, meshId);
  }));

  test('suspends and resumes the formation', step('suspend resume', async () => {
    const row = page.locator(`tr[data-app="${APP}"]`);
    await row.getByRole('button', { name: `Suspend formation ${APP}` }).click();
    await row.getByText('Suspended').waitFor();
    await row.getByRole('button', { name: `Resume formation ${APP}` }).click();
    await row.getByText('Active').waitFor();
  }));

  test('creates an enrollment token, shown once', step('create token', async () => {
    await page.getByRole('link', { name: 'Tokens' }).click();
    await page.getByLabel('Formation').selectOption(APP);
    await page.getByLabel('Label').fill('ci');
    await page.getByRole('button', { name: 'Create token' }).click();
    const shown = page.getByTestId('new-token');
    await shown.waitFor();
    const tokenId = await shown.inputValue();
    assert.match(tokenId, /^peat_[0-9a-f]{32}$/);
    const row = page.locator('tbody tr').filter({ hasText: 'ci' });
    await row.waitFor();
    assert.ok(!((await row.textContent()) ?? '').includes(tokenId), 'the list must not show the whole token');
    const tokens = await apiGet(`/orgs/${ORG}/formations/${APP}/tokens`);
    assert.equal(tokens.length, 1);
    await page.getByRole('button', { name: 'Done' }).click();
    assert.equal(await page.getByTestId('new-token').count(), 0);
  }));

  test('a deep link survives a reload with status 200', step('deep link', async () => {
    const res = await page.goto(`/_/orgs/${ORG}/formations/${APP}`);
    assert.equal(res?.status(), 200);
    await page.getByRole('heading', { name: `Formation ${APP}` }).waitFor();
    await page.getByRole('heading', { name: 'Documents' }).waitFor();
  }));

  test('signing out brings the sign-in screen back', step('sign out', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('peat-gateway.admin-token')), null);
  }));
});
