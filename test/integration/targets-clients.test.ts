// The snapshot targets served over NBD and driven by the clients users run: qemu-io, nbdcopy,
// qemu-img, fio (verify), and nbdfuse + loop + ext4 for a point-in-time filesystem snapshot.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileDevice } from '../../src/block/file-device.ts';
import type { ExportProvider, NbdExport } from '../../src/nbd/exports.ts';
import { NbdServer } from '../../src/nbd/server.ts';
import { openStore } from '../../src/store/open-store.ts';
import type { StoreKind } from '../../src/store/exception-store.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import type { Snapshot } from '../../src/targets/snapshot.ts';
import { mustRun, run } from '../support/exec.ts';
import { attachFuseDisk, type FuseDisk } from '../support/nbdfuse.ts';

const MiB = 1 << 20;
const ORIGIN_BYTES = 64 * MiB;

let dir: string;
let sock: string;
let server: NbdServer;
let origin: SnapshotOrigin;
const exports = new Map<string, NbdExport>();
const provider: ExportProvider = { get: (n) => exports.get(n), list: () => [...exports.values()] };

const uri = (name: string) => `nbd+unix:///${name}?socket=${sock}`;

async function snapshot(name: string, kind: StoreKind, chunkSectors: number, cowBytes = 80 * MiB): Promise<Snapshot> {
  const cow = FileDevice.open(path.join(dir, `${name}.cow`), { createSize: cowBytes });
  const snap = await origin.createSnapshot(await openStore(kind, cow, { chunkSectors }));
  exports.set(name, { name, device: snap });
  return snap;
}

async function qemuIo(name: string, ...cmds: string[]): Promise<string> {
  return mustRun('qemu-io', ['-f', 'raw', uri(name), ...cmds.flatMap((c) => ['-c', c])]);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'targets-clients-'));
  sock = path.join(dir, 'nbd.sock');
  const file = path.join(dir, 'origin.img');
  fs.writeFileSync(file, Buffer.alloc(ORIGIN_BYTES, 0x5a));
  origin = new SnapshotOrigin(FileDevice.open(file));
  exports.set('origin', { name: 'origin', device: origin });
  server = new NbdServer({ exports: provider });
  await server.listenUnix(sock);
});

afterAll(async () => {
  await server?.close();
  for (const snap of [...(origin?.snapshots ?? [])]) await origin.removeSnapshot(snap);
  await origin?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('snapshot exports with real clients', () => {
  it('qemu-io: origin writes leave the snapshot at its point in time; snapshot writes stay in the snapshot', async () => {
    await snapshot('qio', 'P', 8);
    await qemuIo('origin', 'write -P 0xa5 0 1M', 'write -P 0xa6 5M 64k', 'aio_write -P 0xa7 7M 8k', 'aio_flush');
    const out = await qemuIo('qio', 'read -P 0x5a 0 1M', 'read -P 0x5a 5M 64k', 'read -P 0x5a 7M 8k', 'write -P 0x77 10M 4k', 'read -P 0x77 10M 4k', 'write -z 11M 64k', 'read -P 0 11M 64k');
    expect(out).not.toMatch(/Pattern verification failed|error/i);
    const back = await qemuIo('origin', 'read -P 0xa5 0 1M', 'read -P 0x5a 10M 4k', 'read -P 0x5a 11M 64k');
    expect(back).not.toMatch(/Pattern verification failed|error/i);
  });

  it('nbdcopy and qemu-img compare: the snapshot equals the image copied in before it was taken', async () => {
    const before = path.join(dir, 'before.img');
    const after = path.join(dir, 'after.img');
    fs.writeFileSync(before, crypto.randomBytes(ORIGIN_BYTES));
    fs.writeFileSync(after, crypto.randomBytes(ORIGIN_BYTES));
    await mustRun('nbdcopy', ['--flush', before, uri('origin')]);
    await snapshot('copy', 'PO', 16);
    await mustRun('nbdcopy', ['--flush', after, uri('origin')]);
    const out = path.join(dir, 'snap.out');
    await mustRun('nbdcopy', [uri('copy'), out]);
    expect(fs.readFileSync(out).equals(fs.readFileSync(before))).toBe(true);
    expect((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri('origin'), after])).code).toBe(0);
    expect((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri('copy'), after])).code).toBe(1);
    await origin.removeSnapshot(exports.get('copy')!.device as Snapshot);
    exports.delete('copy');
  });

  it('fio verify: concurrent random writes to the origin and to a snapshot each read back intact', async () => {
    await snapshot('fio', 'N', 8);
    const job = (name: string) =>
      run('fio', ['--name=v', '--ioengine=nbd', `--uri=${uri(name)}`, '--rw=randwrite', '--bs=4k', '--size=16M', '--iodepth=16', '--numjobs=2', '--offset_increment=16M', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--group_reporting', '--verify_state_save=0']);
    const [o, s] = await Promise.all([job('origin'), job('fio')]);
    expect(o.stdout + o.stderr).toMatch(/err= 0/);
    expect(s.stdout + s.stderr).toMatch(/err= 0/);
    expect(o.code).toBe(0);
    expect(s.code).toBe(0);
    // The qemu-io snapshot taken earlier still shows its own point in time under all that.
    expect(await qemuIo('qio', 'read -P 0x5a 20M 1M')).not.toMatch(/Pattern verification failed/);
  });
});

describe('ext4 on the origin, snapshot while mounted', () => {
  // Everything that touches the mounts runs in child processes: the NBD server lives in this
  // process, and a synchronous read here would wait for I/O that only this thread can serve.
  const sh = (script: string) => run('sh', ['-ec', script]);
  const disks: FuseDisk[] = [];
  let fsOrigin: SnapshotOrigin | undefined;
  afterAll(async () => {
    for (const d of disks.reverse()) await d.close();
    for (const snap of [...(fsOrigin?.snapshots ?? [])]) await fsOrigin!.removeSnapshot(snap);
    await fsOrigin?.close();
  });

  it('the snapshot mounts with exactly the files of its point in time and fscks clean', async () => {
    const file = path.join(dir, 'fs.img');
    fs.writeFileSync(file, Buffer.alloc(0));
    fs.truncateSync(file, 64 * MiB);
    fsOrigin = new SnapshotOrigin(FileDevice.open(file));
    exports.set('fsorigin', { name: 'fsorigin', device: fsOrigin });
    const o = await attachFuseDisk(uri('fsorigin'), dir);
    disks.push(o);
    await mustRun('mkfs.ext4', ['-q', '-F', o.loop]);
    const mnt = path.join(dir, 'mnt-origin');
    const manifest = path.join(dir, 'manifest');
    await o.mount(mnt);
    const before = await sh(`cd ${mnt}; for i in $(seq 0 19); do head -c 150000 /dev/urandom > before-$i; done; sha256sum before-* > ${manifest}; sync`);
    expect(before.code, before.stderr).toBe(0);
    await mustRun('fsfreeze', ['-f', mnt]); // what lvcreate does: a clean point in time
    const cow = FileDevice.open(path.join(dir, 'fs.cow'), { createSize: 80 * MiB });
    const snap = await fsOrigin.createSnapshot(await openStore('P', cow, { chunkSectors: 8 }));
    exports.set('fssnap', { name: 'fssnap', device: snap });
    await mustRun('fsfreeze', ['-u', mnt]);
    const after = await sh(`cd ${mnt}; for i in $(seq 0 19); do head -c 40000 /dev/urandom > after-$i; done; rm before-3; echo changed > before-4; sync`);
    expect(after.code, after.stderr).toBe(0);

    const s = await attachFuseDisk(uri('fssnap'), dir);
    disks.push(s);
    const smnt = path.join(dir, 'mnt-snap');
    await s.mount(smnt);
    const listing = await sh(`ls ${smnt}`);
    const names = listing.stdout.split('\n').filter((n) => n && n !== 'lost+found').sort();
    expect(names).toEqual(Array.from({ length: 20 }, (_, i) => `before-${i}`).sort());
    const check = await sh(`cd ${smnt} && sha256sum -c --quiet ${manifest}`);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    const originNow = await sh(`cd ${mnt} && ls | grep -c after- && cat before-4`);
    expect(originNow.stdout).toBe('20\nchanged\n');
    await s.umount();
    await o.umount();
    expect((await run('e2fsck', ['-fn', s.loop])).code).toBe(0);
    expect((await run('e2fsck', ['-fn', o.loop])).code).toBe(0);
  });
});
