// `sandboxctl events …`: the commands live in ./events/ (one file per group); this door keeps the old import path.
export {
  type GlobalOptions,
  parseDuration,
  parseSince,
  parseUntil,
  registerEventCommands,
} from './events/index.js';
