import { describe, expect, it } from 'vitest';
import { InflightBudget } from './inflight-budget.ts';

describe('InflightBudget', () => {
  it('is exhausted at its cap and wakes waiters once there is room again', async () => {
    const budget = new InflightBudget(100);
    budget.take(60);
    expect(budget.exhausted).toBe(false);
    budget.take(40);
    expect(budget.exhausted).toBe(true);
    let woken = 0;
    const waiter = (): void => void woken++;
    budget.wait(waiter);
    budget.wait(waiter);
    budget.give(1);
    await new Promise((r) => setImmediate(r));
    expect(woken).toBe(1); // a Set: one wake per waiter
    budget.take(1);
    budget.wait(waiter);
    budget.forget(waiter);
    budget.give(50);
    await new Promise((r) => setImmediate(r));
    expect(woken).toBe(1);
  });
});
