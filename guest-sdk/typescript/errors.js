// The error type handlers throw (its own file: index.js and tables.js both use it).

/** An error a handler throws for its caller: becomes an error frame with `code`. */
export class FireflyError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "FireflyError";
    this.code = code;
  }
}
