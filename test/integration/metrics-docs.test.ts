// docs/metrics.md against the code and against promtool: the page lists exactly the nbdsnap_
// metrics the daemon exposes, and its sample alert rules are valid (`promtool check rules`) and
// fire as described (`promtool test rules` on made-up series).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.ts';
import { DaemonMetrics } from '../../src/metrics/daemon-metrics.ts';
import { promtool } from '../support/metrics-text.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DOC = fs.readFileSync(path.join(ROOT, 'docs/metrics.md'), 'utf8');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'metrics-docs-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The fenced yaml block of the page that holds rule groups. */
function alertRules(): string {
  const blocks = [...DOC.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
  const rules = blocks.filter((b) => b.startsWith('groups:'));
  expect(rules).toHaveLength(1);
  return rules[0];
}

const RULE_TESTS = `
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'nbdsnap_snapshot_data_ratio{snapshot="steady",origin="base"}'
        values: '0.85x15'
      - series: 'nbdsnap_snapshot_data_ratio{snapshot="growing",origin="base"}'
        values: '0.5+0.01x15'
      - series: 'nbdsnap_snapshot_state{snapshot="lost",origin="base",state="invalid"}'
        values: '1x15'
      - series: 'nbdsnap_snapshot_state{snapshot="steady",origin="base",state="invalid"}'
        values: '0x15'
    alert_rule_test:
      - eval_time: 10m
        alertname: NbdsnapSnapshotFilling
        exp_alerts:
          - exp_labels: { severity: warning, snapshot: steady, origin: base }
            exp_annotations:
              summary: 'Snapshot steady of base is 85% full'
              description: 'Grow its COW (nbdsnap snapshot resize steady --size +SIZE) or remove it before it fills and is invalidated.'
      - eval_time: 10m
        alertname: NbdsnapSnapshotAlmostFull
        exp_alerts:
          - exp_labels: { severity: critical, snapshot: growing, origin: base }
            exp_annotations:
              summary: 'Snapshot growing of base is about to fill its COW'
      - eval_time: 1m
        alertname: NbdsnapSnapshotLost
        exp_alerts:
          - exp_labels: { severity: critical, snapshot: lost, origin: base, state: invalid }
            exp_annotations:
              summary: 'Snapshot lost of base is invalid'
`;

describe('docs/metrics.md', () => {
  it('lists exactly the nbdsnap_ metrics the daemon exposes', async () => {
    const metrics = new DaemonMetrics({ at: { host: '127.0.0.1', port: 0 }, dataDir: dir, log: silentLogger() });
    metrics.collectFrom({ exportNames: () => [], connectionCount: () => 0, inflightBytes: () => 0, snapshots: () => [] });
    const exposed = [...(await metrics.scrape()).matchAll(/^# TYPE (nbdsnap_\w+) /gm)].map((m) => m[1]).sort();
    const documented = [...new Set([...DOC.matchAll(/^\| `(nbdsnap_\w+)` \|/gm)].map((m) => m[1]))].sort();
    expect(exposed.length).toBeGreaterThan(15);
    expect(documented).toEqual(exposed);
  });

  it('has sample alert rules that promtool accepts and that fire as described', async () => {
    fs.writeFileSync(path.join(dir, 'rules.yml'), alertRules());
    fs.writeFileSync(path.join(dir, 'rules.test.yml'), RULE_TESTS);
    const checked = await promtool(['check', 'rules', path.join(dir, 'rules.yml')]);
    expect(checked.output).toContain('SUCCESS: 3 rules found');
    expect(checked.code).toBe(0);
    const tested = await promtool(['test', 'rules', path.join(dir, 'rules.test.yml')]);
    expect(tested.output).toContain('SUCCESS');
    expect(tested.code).toBe(0);
  });
});
