// A Store as the daemon builds one, for tests that use the queue without a daemon: event bodies
// are rendered by views.ts's eventBody, as app.ts has them rendered.

import { Store, type StoreOptions } from "../../src/queue/store.ts";
import { eventBody, type ViewOptions } from "../../src/views.ts";

export const TEST_VIEWS: ViewOptions = { publicUrl: "http://127.0.0.1:8080", inlineLimit: 262144 };

export function openStore(path: string, options: Partial<StoreOptions> = {}): Store {
  return new Store(path, {
    renderEvent: (job, event) => eventBody(job, event, TEST_VIEWS),
    ...options,
  });
}
