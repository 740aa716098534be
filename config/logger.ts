/**
 * Logs are data (ARCHITECTURE.md "House rules"): a message plus fields. Library code receives a Logger;
 * the CLI decides where lines go (terminal, JSON file, nowhere). One shape everywhere: modules
 * that only report (uploads, the tracker's follower) take `Pick<Logger, 'info' | 'warn'>`, and a
 * crawl worker thread sends its lines to the main thread as `LogEntry` data.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** One log line as data. `component` is the dotted path of child loggers (`lifeboat.crawl.robots`). */
export interface LogEntry {
  level: LogLevel;
  component: string;
  message: string;
  fields?: Record<string, unknown>;
}

export interface Logger {
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export function createLogger(sink: (entry: LogEntry) => void, component = 'lifeboat'): Logger {
  const log = (level: LogLevel, message: string, fields?: Record<string, unknown>): void => {
    sink({ level, component, message, ...(fields ? { fields } : {}) });
  };
  return {
    log,
    debug: (message, fields) => log('debug', message, fields),
    info: (message, fields) => log('info', message, fields),
    warn: (message, fields) => log('warn', message, fields),
    error: (message, fields) => log('error', message, fields),
    child: (name) => createLogger(sink, `${component}.${name}`),
  };
}

export const silentLogger: Logger = createLogger(() => {});
