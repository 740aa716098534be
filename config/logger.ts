/**
 * Logs are data (STYLE.md habit 14): a message plus fields. Library code receives a Logger;
 * the CLI decides where lines go (terminal, JSON file, nowhere).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export function createLogger(sink: (entry: { level: LogLevel; component: string; message: string; fields?: Record<string, unknown> }) => void, component = 'lifeboat'): Logger {
  return {
    log(level, message, fields) {
      sink({ level, component, message, ...(fields ? { fields } : {}) });
    },
    child(name) {
      return createLogger(sink, `${component}.${name}`);
    },
  };
}

export const silentLogger: Logger = createLogger(() => {});
