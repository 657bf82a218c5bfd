// Event types known to the log: their current schema, a runtime validator, and upcasters from old schemas.
import { InvalidArgument } from '../errors/index.js';

/** Turns data written at schema `n` into schema `n + 1`. Pure; never throws for data its schema allowed. */
export type Upcaster = (data: unknown) => unknown;

export interface EventTypeDefinition<D = unknown> {
  readonly type: string;
  /** Current schema version (≥ 1). */
  readonly schema: number;
  /** Returns the data typed, or throws InvalidArgument naming the bad field. */
  readonly validate: (data: unknown) => D;
  /** `upcasters[n]` lifts schema n to n + 1, for every n below `schema`. */
  readonly upcasters?: Readonly<Record<number, Upcaster>>;
}

/** A set of event type definitions. The store validates appends and upcasts reads through one. */
export class EventRegistry {
  private readonly defs = new Map<string, EventTypeDefinition>();

  register(...defs: readonly EventTypeDefinition[]): this {
    for (const def of defs) {
      if (this.defs.has(def.type))
        throw new InvalidArgument('type', `event type ${def.type} registered twice`);
      for (let s = 1; s < def.schema; s++) {
        if (!def.upcasters?.[s])
          throw new InvalidArgument('upcasters', `${def.type}: no upcaster from schema ${s}`);
      }
      this.defs.set(def.type, def);
    }
    return this;
  }

  has(type: string): boolean {
    return this.defs.has(type);
  }

  types(): string[] {
    return [...this.defs.keys()];
  }

  /** Current schema of `type`; throws InvalidArgument('type') for an unknown type. */
  currentSchema(type: string): number {
    return this.get(type).schema;
  }

  /** Validates `data` as the current schema of `type`. */
  validate(type: string, data: unknown): unknown {
    return this.get(type).validate(data);
  }

  /** Lifts `data` stored at `schema` to the current schema (identity when already current). */
  upcast(type: string, schema: number, data: unknown): unknown {
    const def = this.get(type);
    let out = data;
    for (let s = schema; s < def.schema; s++) out = def.upcasters![s]!(out);
    return out;
  }

  private get(type: string): EventTypeDefinition {
    const def = this.defs.get(type);
    if (!def) throw new InvalidArgument('type', `unknown event type ${JSON.stringify(type)}`);
    return def;
  }
}
