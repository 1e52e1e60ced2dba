// Builds the console into banyan/console/dist (committed, so the proxy serves it with Python alone).
// dist/build.json records the digest of every source file and of every built file:
// tests/console/test_build.py fails when the sources changed without a rebuild (`npm run build`).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import { sha256, sourcesDigest } from './digest.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const dist = join(here, '..', 'banyan', 'console', 'dist')
rmSync(dist, { recursive: true, force: true })
mkdirSync(join(dist, 'assets'), { recursive: true })
const result = await esbuild.build({
  entryPoints: { console: join(here, 'src', 'main.ts'), styles: join(here, 'src', 'styles.css') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  outdir: join(dist, 'assets'),
  entryNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
})
const outputs = Object.keys(result.metafile.outputs).map((p) => relative(dist, p).split('\\').join('/'))
const html = readFileSync(join(here, 'src', 'index.html'), 'utf8')
  .replace('%SCRIPT%', outputs.find((p) => p.endsWith('.js')))
  .replace('%STYLES%', outputs.find((p) => p.endsWith('.css')))
writeFileSync(join(dist, 'index.html'), html)
const files = Object.fromEntries(
  ['index.html', ...outputs].sort().map((p) => [p, sha256(readFileSync(join(dist, p)))]),
)
const { digest, paths } = sourcesDigest()
writeFileSync(
  join(dist, 'build.json'),
  JSON.stringify({ sources_digest: digest, sources: paths, files }, null, 2) + '\n',
)
console.log(`built ${Object.keys(files).length} files into banyan/console/dist (sources ${digest.slice(0, 12)})`)
