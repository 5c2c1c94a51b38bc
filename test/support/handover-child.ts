// A stand-in successor for test/integration/nbd-handover.test.ts: an NbdServer over the same
// image file, adopting the connections the test process hands it over IPC (as daemon/successor.ts
// does), and acknowledging each.
import { FileDevice } from '../../src/block/file-device.ts';
import { staticExports } from '../../src/nbd/exports.ts';
import { NbdServer } from '../../src/nbd/server.ts';
import type { TransmissionState } from '../../src/nbd/connection.ts';

// Opened at the first connection: until then the test process holds the file (device-claim.ts).
let server: NbdServer | undefined;
process.on('message', (msg: { type: string; state: TransmissionState; rest: string }, handle?: object) => {
  server ??= new NbdServer({ exports: staticExports([{ name: 'disk', device: FileDevice.open(process.argv[2]) }]) });
  if (msg.type === 'connection' && handle) server.adoptConnection(handle, msg.state, Buffer.from(msg.rest, 'base64'));
  process.send?.({ type: 'adopted' });
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'loaded' });
