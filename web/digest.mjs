// The digest of the web app's sources that build.mjs records in banyan/webapp/dist/build.json and
// banyan/webapp/__init__.py recomputes: sha256 over "path\0sha256(content)\n" lines, paths sorted.
// Usage on its own: node digest.mjs (prints the digest of the sources as they are now).
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const SOURCE_FILES = ['build.mjs', 'digest.mjs', 'package.json', 'package-lock.json', 'tsconfig.json']

export const sha256 = (data) => createHash('sha256').update(data).digest('hex')

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)],
  )
}

export function sourcesDigest() {
  const paths = [...SOURCE_FILES, ...walk(join(here, 'src')).map((p) => relative(here, p))]
    .map((p) => p.split('\\').join('/'))
    .sort()
  const lines = paths.map((p) => `${p}\0${sha256(readFileSync(join(here, p)))}\n`)
  return { digest: sha256(lines.join('')), paths }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(sourcesDigest().digest)
