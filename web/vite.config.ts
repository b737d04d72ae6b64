import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The SDK is used from its TypeScript source (sdk/ts/src), so the app and the SDK are built as one bundle.
export default defineConfig({
  resolve: {
    alias: {
      "@smb-command/sdk": fileURLToPath(new URL("../sdk/ts/src/index.ts", import.meta.url)),
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` talks to a local `smb up` through the dev server.
    proxy: {
      "/smb.": "http://127.0.0.1:8080",
      "/webhooks": "http://127.0.0.1:8080",
    },
  },
});
