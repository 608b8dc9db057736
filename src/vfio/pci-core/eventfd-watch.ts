/**
 * Several kernel consumers can wait on one eventfd (vfio virqfds, KVM irqfds); EventFd has a
 * single `onSignal` slot, so consumers in this folder share it through a dispatcher that also
 * keeps calling whatever handler was installed before the first watcher arrived.
 */
import type { EventFd } from '../fd.js';

type Handler = (fd: EventFd) => void;

interface Watchers {
  readonly previous: Handler | undefined;
  readonly list: Handler[];
  readonly dispatch: Handler;
}

const table = new WeakMap<EventFd, Watchers>();

/** Calls `fn` on every signal of `efd` until the returned function is called. */
export function watchEventFd(efd: EventFd, fn: Handler): () => void {
  let w = table.get(efd);
  if (!w) {
    const list: Handler[] = [];
    const previous = efd.onSignal;
    const dispatch: Handler = (fd) => {
      previous?.(fd);
      // Index loop, no copy: signals are a hot path (ioeventfd doorbells).
      for (let i = 0; i < list.length; i++) list[i]!(fd);
    };
    w = { previous, list, dispatch };
    table.set(efd, w);
    efd.onSignal = dispatch;
  }
  const watchers = w;
  watchers.list.push(fn);
  return () => {
    const i = watchers.list.indexOf(fn);
    if (i < 0) return;
    watchers.list.splice(i, 1);
    if (watchers.list.length === 0) {
      table.delete(efd);
      if (efd.onSignal === watchers.dispatch) efd.onSignal = watchers.previous;
    }
  };
}
