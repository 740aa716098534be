// Copies non-TypeScript assets (built-in profiles, tracker pages) next to the compiled code, and
// makes the package's bin executable (tsc writes it 0644: `npx lifeboat` in a fresh checkout,
// which runs the bin file itself, was refused with "Permission denied").
import { chmodSync, cpSync, existsSync, readFileSync } from 'node:fs';
for (const dir of ['config/profiles', 'tracker/public']) {
  if (existsSync(dir)) cpSync(dir, `dist/${dir}`, { recursive: true });
}
for (const bin of Object.values(JSON.parse(readFileSync('package.json', 'utf8')).bin ?? {})) {
  if (existsSync(bin)) chmodSync(bin, 0o755);
}
