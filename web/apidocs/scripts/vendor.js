// Copies Swagger UI's browser bundle from node_modules/swagger-ui-dist
// (pinned by package-lock.json; `npm ci --ignore-scripts` installs it) into
// vendor/, which web.DocsFS embeds and identityd serves at /docs/ with
// --api-docs. With --check, fails if the committed vendor/ differs from
// what the pinned package holds (go test ./web/ runs the check), so the
// bundle is the npm package's, never edited or pasted by hand.
//
// Refresh: change the version in package.json, then
//   npm install --ignore-scripts && npm run vendor
// and commit package.json, package-lock.json and vendor/.
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(here, 'node_modules', 'swagger-ui-dist');
const vendor = path.join(here, 'vendor');
// The bundle (React and Swagger UI in one classic script), its stylesheet,
// and the licences that must travel with them.
const files = ['swagger-ui-bundle.js', 'swagger-ui.css', 'swagger-ui-bundle.js.LICENSE.txt', 'LICENSE', 'NOTICE'];
const check = process.argv.includes('--check');

const pinned = JSON.parse(readFileSync(path.join(here, 'package.json'), 'utf8')).devDependencies['swagger-ui-dist'];
if (!existsSync(path.join(dist, 'package.json'))) {
  console.error('swagger-ui-dist is not installed: run `npm ci --ignore-scripts` in web/apidocs/');
  process.exit(1);
}
const installed = JSON.parse(readFileSync(path.join(dist, 'package.json'), 'utf8')).version;
if (installed !== pinned) {
  console.error(`node_modules holds swagger-ui-dist ${installed}, package.json pins ${pinned}: run \`npm ci --ignore-scripts\``);
  process.exit(1);
}

// VERSION says which release vendor/ holds, for a reader of the tree.
const want = new Map(files.map((f) => [f, readFileSync(path.join(dist, f))]));
want.set('VERSION', Buffer.from(`swagger-ui-dist ${installed}\n`));

if (check) {
  const stale = [];
  for (const [f, body] of want) {
    const target = path.join(vendor, f);
    if (!existsSync(target) || !readFileSync(target).equals(body)) stale.push(f);
  }
  const extra = existsSync(vendor) ? readdirSync(vendor).filter((f) => !want.has(f)) : [];
  if (stale.length || extra.length) {
    console.error(`web/apidocs/vendor/ is not swagger-ui-dist ${installed}'s: ` +
      `${[...stale.map((f) => `${f} differs`), ...extra.map((f) => `${f} is not the package's`)].join(', ')}; ` +
      'run `npm run vendor` in web/apidocs/ and commit vendor/');
    process.exit(1);
  }
  console.log(`vendor/ is swagger-ui-dist ${installed}'s`);
} else {
  mkdirSync(vendor, { recursive: true });
  for (const [f, body] of want) writeFileSync(path.join(vendor, f), body);
  console.log(`vendor/: swagger-ui-dist ${installed}`);
}
