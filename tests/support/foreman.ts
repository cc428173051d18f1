// Tests import the foreman harness from here; it lives in harness/foreman.ts, which bench/ shares.
export * from "../../harness/foreman.ts";
