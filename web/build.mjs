// Builds the AI Tutor web app into banyan/webapp/dist (committed, so `make run` needs Python only).
// Writes dist/build.json with a digest of every source file: tests/webapp/test_build.py recomputes
// it and fails when the sources changed without a rebuild (`npm run build` in web/).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import { sha256, sourcesDigest } from './digest.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const dist = join(here, '..', 'banyan', 'webapp', 'dist')
rmSync(dist, { recursive: true, force: true })
mkdirSync(join(dist, 'assets'), { recursive: true })
const result = await esbuild.build({
  entryPoints: [join(here, 'src', 'main.ts'), join(here, 'src', 'styles.css')],
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
const script = outputs.find((p) => p.endsWith('.js'))
const styles = outputs.find((p) => p.endsWith('.css'))
const html = readFileSync(join(here, 'src', 'index.html'), 'utf8')
  .replace('%SCRIPT%', script)
  .replace('%STYLES%', styles)
writeFileSync(join(dist, 'index.html'), html)
const files = Object.fromEntries(
  ['index.html', ...outputs].sort().map((p) => [p, sha256(readFileSync(join(dist, p)))]),
)
const { digest, paths } = sourcesDigest()
writeFileSync(
  join(dist, 'build.json'),
  JSON.stringify({ sources_digest: digest, sources: paths, files }, null, 2) + '\n',
)
console.log(`built ${Object.keys(files).length} files into banyan/webapp/dist (sources ${digest.slice(0, 12)})`)
