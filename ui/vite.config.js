import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// The gateway serves the UI under /_/ and the API at the origin root, so the
// base path is baked in here and the dev server forwards API paths.
const api = process.env.PEAT_GATEWAY_URL || 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/_/',
  plugins: [svelte()],
  build: {
    outDir: 'dist',
    // public/.gitkeep is copied back after the clean, keeping the
    // placeholder that lets `go build` embed an otherwise empty directory.
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false
  },
  server: {
    proxy: Object.fromEntries(
      ['/orgs', '/health', '/ready', '/metrics'].map((p) => [p, api])
    )
  }
});
