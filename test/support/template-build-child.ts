// A process that builds one template and nothing else, so a test can kill -9 it in the middle of the build.
// argv: <templates dir>. Prints "building" once it started.
import pino from 'pino';
import { createGrpcAgent } from '../../src/agent/index.js';
import { createQemuHypervisor } from '../../src/hypervisor/index.js';
import { ensureGuestImage } from '../../src/image/index.js';
import { TemplateStore } from '../../src/templates/index.js';

const logger = pino({ level: 'silent' });
const dir = process.argv[2];
if (!dir) throw new Error('usage: template-build-child <dir>');
const image = await ensureGuestImage({ logger });
const hypervisor = createQemuHypervisor({ logger });
const store = new TemplateStore({
  dir,
  image: async () => image,
  agent: createGrpcAgent({ logger }),
  accel: () => hypervisor.accel(),
  logger,
});
process.stdout.write('building\n');
await store.build({ vcpus: 1, maxVcpus: 2, memoryMiB: 256, maxMemoryMiB: 512, network: 'none' });
process.stdout.write('built\n');
process.exit(0);
