// The boot kernel unpacked from a bzImage: an XZ payload holding an ELF with the PVH entry note is taken out; any
// other kernel is left to boot as it is. Real xz(1) packs and unpacks.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { hasPvhNote, pvhKernelOf } from '../src/image/pvh.js';

/** A minimal ELF64 with one PT_NOTE segment holding one note (owner, type). */
function elfWithNote(owner: string, type: number): Buffer {
  const name = Buffer.from(`${owner}\0`);
  const namePadded = Buffer.concat([name, Buffer.alloc((4 - (name.length % 4)) % 4)]);
  const note = Buffer.concat([Buffer.alloc(12), namePadded, Buffer.alloc(4)]);
  note.writeUInt32LE(name.length, 0);
  note.writeUInt32LE(4, 4);
  note.writeUInt32LE(type, 8);
  const elf = Buffer.alloc(64 + 56);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2; // 64-bit
  elf[5] = 1; // little-endian
  elf.writeBigUInt64LE(64n, 0x20); // e_phoff
  elf.writeUInt16LE(56, 0x36); // e_phentsize
  elf.writeUInt16LE(1, 0x38); // e_phnum
  elf.writeUInt32LE(4, 64); // PT_NOTE
  elf.writeBigUInt64LE(BigInt(elf.length), 64 + 0x08); // p_offset
  elf.writeBigUInt64LE(BigInt(note.length), 64 + 0x20); // p_filesz
  return Buffer.concat([elf, note]);
}

/** A bzImage-shaped buffer: the boot header, then `payload` where payload_offset says (setup_sects = 1). */
function bzImageOf(payload: Buffer): Buffer {
  const setup = Buffer.alloc(2 * 512);
  setup[0x1f1] = 1;
  setup.write('HdrS', 0x202, 'latin1');
  setup.writeUInt32LE(0x40, 0x248);
  setup.writeUInt32LE(payload.length, 0x24c);
  return Buffer.concat([setup, Buffer.alloc(0x40), payload, Buffer.alloc(100)]);
}

const xz = (data: Buffer) => execFileSync('xz', ['--compress', '--stdout', '--check=crc32'], { input: data });

describe('PVH kernel from a bzImage', () => {
  it('finds the Xen PHYS32_ENTRY note, and only that one', () => {
    assert.equal(hasPvhNote(elfWithNote('Xen', 18)), true);
    assert.equal(hasPvhNote(elfWithNote('Xen', 17)), false);
    assert.equal(hasPvhNote(elfWithNote('GNU', 18)), false);
    assert.equal(hasPvhNote(Buffer.from('not an elf at all, not at all....')), false);
  });

  it('unpacks the ELF of an XZ payload when it has the note', async () => {
    const elf = elfWithNote('Xen', 18);
    assert.deepEqual(await pvhKernelOf(bzImageOf(xz(elf))), elf);
  });

  it('leaves a kernel without the note, another compression or no boot header as it is', async () => {
    assert.equal(await pvhKernelOf(bzImageOf(xz(elfWithNote('GNU', 1)))), undefined);
    assert.equal(await pvhKernelOf(bzImageOf(Buffer.from('\x1f\x8b gzip, not xz'))), undefined);
    assert.equal(await pvhKernelOf(Buffer.alloc(4096)), undefined);
  });
});
