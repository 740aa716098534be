// Copies non-TypeScript assets (built-in profiles, tracker pages) next to the compiled code.
import { cpSync, existsSync } from 'node:fs';
for (const dir of ['config/profiles', 'tracker/public']) {
  if (existsSync(dir)) cpSync(dir, `dist/${dir}`, { recursive: true });
}
