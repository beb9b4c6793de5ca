// Emits the declarations of identity-client.js and identity-axios.js from
// their JSDoc (tsconfig.types.json) and puts them beside the modules, where
// TypeScript finds them for an import of the .js file; with --check, fails
// if the committed ones differ from what tsc emits now (npm run typecheck,
// go test ./web/). tsc cannot emit there itself: it reads those files as
// its input.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const files = ['identity-client.d.ts', 'identity-axios.d.ts'];
const check = process.argv.includes('--check');

const out = mkdtempSync(path.join(tmpdir(), 'identity-types-'));
try {
  execFileSync(process.execPath, [path.join(web, 'node_modules/typescript/bin/tsc'), '-p', path.join(web, 'tsconfig.types.json'), '--outDir', out], { stdio: 'inherit' });
  const stale = [];
  for (const f of files) {
    const emitted = readFileSync(path.join(out, f), 'utf8');
    const target = path.join(web, f);
    if (check) {
      if (!existsSync(target) || readFileSync(target, 'utf8') !== emitted) stale.push(f);
    } else {
      writeFileSync(target, emitted);
    }
  }
  if (stale.length) {
    console.error(`stale declarations: ${stale.join(', ')}: run \`npm run types\` in web/ and commit them`);
    process.exit(1);
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
