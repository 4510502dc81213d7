import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run build` writes the page where `diffblocks serve` serves it from; `npm run dev` proxies the API to a
// server started with `diffblocks serve (port 8188)`.
export default defineConfig({
  plugins: [react()],
  base: './',
  build: {
    outDir: '../server/static',
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: { '/api': { target: 'http://127.0.0.1:8188', ws: true } },
  },
});
