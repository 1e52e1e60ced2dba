// The digest of the console's sources that build.mjs records in banyan/console/dist/build.json and
// tests/console/test_build.py recomputes: sha256 over "path\0sha256(content)\n" lines, sorted.
// Usage on its own: node digest.mjs (prints the digest of the sources as they are now).
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const FIXED = ['build.mjs', 'digest.mjs', 'package.json', 'package-lock.json', 'tsconfig.json']

export const sha256 = (data) => createHash('sha256').update(data).digest('hex')

const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)],
  )

export function sourcesDigest() {
  const paths = [...FIXED, ...walk(join(here, 'src')).map((p) => relative(here, p))]
    .map((p) => p.split('\\').join('/'))
    .sort()
  const lines = paths.map((p) => `${p}\0${sha256(readFileSync(join(here, p)))}\n`)
  return { digest: sha256(lines.join('')), paths }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(sourcesDigest().digest)
