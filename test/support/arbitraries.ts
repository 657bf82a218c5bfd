// fast-check arbitraries for API params: near-valid values derived from a method's zod schema, and garbage.
import fc from 'fast-check';
import type { z } from 'zod';

/**
 * Placeholders for ids of entities the fuzz test keeps alive (resolved per call, so a generated value stays
 * reproducible while the fixture behind it is rebuilt): `§name§` anywhere in a string.
 */
export const ref = (name: string): string => `§${name}§`;

/** Replaces every `§name§` in strings of `value` (deeply) by `lookup(name)`. */
export function resolveRefs(value: unknown, lookup: (name: string) => string): unknown {
  if (typeof value === 'string') return value.replace(/§(\w+)§/g, (_, name: string) => lookup(name));
  if (Array.isArray(value)) return value.map((v) => resolveRefs(v, lookup));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      Object.defineProperty(out, k, {
        value: resolveRefs(v, lookup),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return value;
}

/** Ids shaped like the real ones (ID_PATTERN), mostly unknown to the daemon. */
export const wellFormedId = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/);

/** Overrides by field name: where the schema alone would produce values that never reach deep paths. */
export type FieldOverrides = Readonly<Record<string, fc.Arbitrary<unknown>>>;

type Def = {
  type: string;
  [key: string]: unknown;
};
type Check = { check: string; [key: string]: unknown };

const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;
const checksOf = (def: Def): Check[] =>
  ((def.checks as { _zod: { def: Check } }[] | undefined) ?? []).map((c) => c._zod.def);

function bounds(def: Def): { min?: number; max?: number; pattern?: RegExp; int: boolean } {
  const out: { min?: number; max?: number; pattern?: RegExp; int: boolean } = { int: false };
  for (const c of checksOf(def)) {
    if (c.check === 'min_length') out.min = c.minimum as number;
    else if (c.check === 'max_length') out.max = c.maximum as number;
    else if (c.check === 'greater_than') out.min = (c.value as number) + (c.inclusive ? 0 : 1);
    else if (c.check === 'less_than') out.max = (c.value as number) - (c.inclusive ? 0 : 1);
    else if (c.check === 'number_format') out.int = true;
    else if (c.check === 'string_format' && c.pattern instanceof RegExp) out.pattern = c.pattern;
  }
  return out;
}

/** Strings of zod's formats (z.ipv4(), z.cidrv6(), …): their regexes are too big to generate from. */
function stringFormat(def: Def): fc.Arbitrary<string> | undefined {
  const prefix = (max: number) =>
    fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max }) }, fc.constant(max + 1)).map((n) => `/${n}`);
  switch (def.format) {
    case 'ipv4':
      return fc.ipV4();
    case 'ipv6':
      return fc.ipV6();
    case 'cidrv4':
      return fc.tuple(fc.ipV4(), prefix(32)).map(([ip, p]) => ip + p);
    case 'cidrv6':
      return fc.tuple(fc.ipV6(), prefix(128)).map(([ip, p]) => ip + p);
    default:
      return def.pattern instanceof RegExp ? fc.stringMatching(def.pattern) : undefined;
  }
}

/** A number that is mostly inside the schema's bounds, sometimes just outside them. */
function numberNear(def: Def): fc.Arbitrary<number> {
  const b = bounds(def);
  const min = b.min ?? -1_000_000;
  const max = b.max ?? min + 2 ** 32;
  const inside = b.int ? fc.integer({ min, max }) : fc.double({ min, max, noNaN: true });
  return fc.oneof(
    { weight: 8, arbitrary: inside },
    { weight: 1, arbitrary: fc.constantFrom(min - 1, max + 1, min + 0.5, 0, -1) },
  );
}

/**
 * Values shaped by `schema`: objects with their fields (optional ones sometimes left out), strings matching
 * its regex, numbers in (and at the edge of) its bounds, enum members. Refinements are not solved: some
 * values are still refused, which is fine for a robustness test. `overrides` replace fields by name.
 */
export function nearValid(
  schema: z.ZodType,
  overrides: FieldOverrides = {},
  depth = 0,
): fc.Arbitrary<unknown> {
  const def = defOf(schema);
  switch (def.type) {
    case 'optional':
      return fc.option(nearValid(def.innerType as z.ZodType, overrides, depth), { nil: undefined });
    case 'object': {
      const shape = def.shape as Record<string, z.ZodType>;
      const model: Record<string, fc.Arbitrary<unknown>> = {};
      const required: string[] = [];
      for (const [key, field] of Object.entries(shape)) {
        const optional = defOf(field).type === 'optional';
        const inner = optional ? (defOf(field).innerType as z.ZodType) : field;
        model[key] = overrides[key] ?? nearValid(inner, overrides, depth + 1);
        if (!optional) required.push(key);
      }
      return fc.record(model, { requiredKeys: required });
    }
    case 'string': {
      const format = stringFormat(def);
      if (format) return format;
      const b = bounds(def);
      if (b.pattern) return fc.stringMatching(b.pattern);
      return fc.string({ minLength: b.min ?? 0, maxLength: Math.min(b.max ?? 24, 24) });
    }
    case 'number':
      return numberNear(def);
    case 'boolean':
      return fc.boolean();
    case 'literal':
      return fc.constantFrom(...(def.values as unknown[]));
    case 'enum':
      return fc.constantFrom(...Object.values(def.entries as Record<string, string>));
    case 'union':
      return fc.oneof(...(def.options as z.ZodType[]).map((o) => nearValid(o, overrides, depth + 1)));
    case 'array': {
      const b = bounds(def);
      return fc.array(nearValid(def.element as z.ZodType, overrides, depth + 1), {
        minLength: b.min ?? 0,
        maxLength: Math.max(b.min ?? 0, Math.min(b.max ?? 4, 4)),
      });
    }
    case 'record':
      return fc.dictionary(
        fc.oneof(
          fc.string({ maxLength: 12 }),
          // Not '__proto__': zod's record drops that key silently (reported; api.fuzz checks creates keep what
          // they accepted, so it would fail until the schema refuses it).
          fc.constantFrom('constructor', 'toString', 'hasOwnProperty', 'a'.repeat(254)),
        ),
        nearValid(def.valueType as z.ZodType, overrides, depth + 1),
        { maxKeys: 3 },
      );
    case 'pipe':
      return nearValid(def.in as z.ZodType, overrides, depth);
    default:
      return garbageValue;
  }
}

/**
 * Copies of one (possibly multi-byte, possibly escaped) character, 10..200 KB once JSON-encoded: big, yet
 * four of them still fit the 1 MiB request line (longer lines are the raw-protocol test's business).
 */
const hugeString = fc
  .tuple(fc.constantFrom('x', 'é', '€', '😀', '\u0000', '"', '\\'), fc.integer({ min: 10_000, max: 200_000 }))
  .map(([ch, bytes]) => ch.repeat(Math.floor(bytes / (Buffer.byteLength(JSON.stringify(ch)) - 2))));

/** Any JSON value a careless or hostile client might put where a field goes. */
export const garbageValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, -0.5, 2 ** 53, -(2 ** 63), 1e308, '', ' ', '0', 'null', '../..'),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.jsonValue({ maxDepth: 2 }),
  fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 4 }),
  { arbitrary: hugeString, weight: 1 },
);

/** Params that are wrong as a whole: not an object, junk objects, the method's own fields with junk in them. */
export function garbageParams(fieldNames: readonly string[]): fc.Arbitrary<unknown> {
  const key = fc.oneof(
    fc.constantFrom(...(fieldNames.length > 0 ? fieldNames : ['id']), '__proto__', 'constructor', ''),
    fc.string({ maxLength: 12 }),
  );
  const ownFields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const name of fieldNames) ownFields[name] = garbageValue;
  return fc.oneof(
    garbageValue,
    fc.constantFrom(null, [], {}, [{}], 'params'),
    fc.dictionary(key, garbageValue, { maxKeys: 4 }),
    fc.record(ownFields, { requiredKeys: [] }),
  );
}

/** One small change to a near-valid object: a field dropped, an unknown one added, one given junk, or a wrapper. */
export function mutated(valid: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc
    .tuple(
      valid,
      fc.constantFrom('drop', 'extra', 'junk', 'array', 'nested'),
      fc.nat(),
      fc.string({ maxLength: 10 }),
      garbageValue,
    )
    .map(([value, how, pick, name, junk]) => {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return junk;
      const obj = { ...(value as Record<string, unknown>) };
      const keys = Object.keys(obj);
      const key = keys.length > 0 ? keys[pick % keys.length]! : undefined;
      switch (how) {
        case 'drop':
          if (key !== undefined) delete obj[key];
          return obj;
        case 'extra':
          obj[`x${name}`] = junk;
          return obj;
        case 'junk':
          if (key !== undefined) obj[key] = junk;
          return obj;
        case 'array':
          return [obj];
        default:
          return key !== undefined ? { ...obj, [key]: { value: obj[key] } } : { params: obj };
      }
    });
}
