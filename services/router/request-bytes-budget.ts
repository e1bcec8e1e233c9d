/**
 * The router's budget of request bytes in flight (config `router.max_request_bytes_in_flight`).
 * The router accepts 80 MB messages and holds each request's `init_image` until its call ends;
 * many concurrent maximum-size requests would otherwise grow its heap without bound. Pure
 * accounting: the caller asks before it holds a request and releases when the call ends.
 */

/** Bytes charged per request on top of its `init_image`: the decoded message, context and queue entry. */
export const REQUEST_OVERHEAD_BYTES = 16 * 1024;

/** The result of {@link RequestBytesBudget.tryAcquire}: a lease to release once, or a refusal with the figures. */
export type BudgetDecision =
  | { readonly kind: 'admit'; readonly release: () => void }
  | { readonly kind: 'reject'; readonly requestBytes: number; readonly inFlightBytes: number; readonly limitBytes: number };

/**
 * Counts the bytes of the requests the router holds. A request is admitted while the total stays
 * within `limitBytes`; one larger than the whole budget is admitted only when nothing else is in
 * flight, so the cap never makes a single valid request impossible (the gRPC message size limit
 * still bounds it).
 */
export class RequestBytesBudget {
  private inFlight = 0;
  private requests = 0;

  constructor(readonly limitBytes: number) {
    if (!Number.isSafeInteger(limitBytes) || limitBytes <= 0) throw new RangeError(`limitBytes must be a positive integer, got ${limitBytes}`);
  }

  /** Bytes of the requests currently admitted. */
  get inFlightBytes(): number {
    return this.inFlight;
  }

  /** Requests currently admitted. */
  get inFlightRequests(): number {
    return this.requests;
  }

  /** The bytes a request of `initImageBytes` is charged: its image plus the fixed overhead. */
  static chargeFor(initImageBytes: number): number {
    return Math.max(0, initImageBytes) + REQUEST_OVERHEAD_BYTES;
  }

  /** Admits `bytes` if they fit; the lease's `release` is idempotent (a second call does nothing). */
  tryAcquire(bytes: number): BudgetDecision {
    const fits = this.inFlight + bytes <= this.limitBytes || this.requests === 0;
    if (!fits) return { kind: 'reject', requestBytes: bytes, inFlightBytes: this.inFlight, limitBytes: this.limitBytes };
    this.inFlight += bytes;
    this.requests += 1;
    let released = false;
    return {
      kind: 'admit',
      release: () => {
        if (released) return;
        released = true;
        this.inFlight -= bytes;
        this.requests -= 1;
      },
    };
  }
}
