// Newline-delimited framing with a size bound: one JSON value per line, lines over the limit skipped whole.

/** Requests (and any line) above this size are refused (the 1 MiB). */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

const NEWLINE = 0x0a;

/**
 * Splits a byte stream into lines. A line longer than `maxBytes` is never buffered whole: `onOversize`
 * fires once and the rest of that line is discarded up to its newline, so the connection can go on.
 */
export class LineDecoder {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping = false;

  constructor(
    private readonly maxBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onOversize: (bytesSeen: number) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl;
      if (this.skipping) {
        if (nl !== -1) this.skipping = false;
      } else {
        const piece = chunk.subarray(start, end);
        if (this.size + piece.length > this.maxBytes) {
          this.onOversize(this.size + piece.length);
          this.parts = [];
          this.size = 0;
          this.skipping = nl === -1;
        } else if (nl === -1) {
          // Copy: the caller's chunk buffer may be reused.
          this.parts.push(Buffer.from(piece));
          this.size += piece.length;
        } else {
          const line =
            this.parts.length === 0
              ? piece.toString('utf8')
              : Buffer.concat([...this.parts, piece]).toString('utf8');
          this.parts = [];
          this.size = 0;
          if (line.trim() !== '') this.onLine(line);
        }
      }
      if (nl === -1) break;
      start = nl + 1;
    }
  }

  /**
   * The stream ended: a last line without its newline still counts (`printf '{…}' | socat …`), so it is
   * handed to onLine like any other; the rest of an oversized line is dropped, as it already was refused.
   */
  end(): void {
    const skipped = this.skipping;
    const line = Buffer.concat(this.parts).toString('utf8');
    this.parts = [];
    this.size = 0;
    this.skipping = false;
    if (!skipped && line.trim() !== '') this.onLine(line);
  }

  /** Bytes of an unfinished line (a client that hung up mid-message). */
  pending(): number {
    return this.size;
  }
}
