// Tests import the webhook receiver from here; it lives in harness/receiver.ts, which bench/ shares.
export * from "../../harness/receiver.ts";
