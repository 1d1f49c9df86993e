// `misbehave-ts`: the TypeScript twin of `modules/misbehave`. Its handlers break the rules, so
// tests can prove the sandbox holds for JavaScript too. Never deploy.
import { FireflyError, handle, log, type Ctx } from "firefly-sdk";
import { deeper } from "./src/recursion";

/** 921: throws a plain Error (a bug): `handler_failed`, with where it was thrown. */
handle(921, () => {
  throw new Error("boom");
});

/** 922: never returns: the CPU budget stops it. */
handle(922, () => {
  let n = 0;
  for (;;) n = (n + 1) | 0;
});

/** 923: allocates until the memory limit stops it. */
handle(923, () => {
  const chunks: Uint8Array[] = [];
  for (;;) chunks.push(new Uint8Array(1 << 20).fill(1));
});

/** 924: recurses without bound. */
handle(924, () => deeper(0));

/** 925: fails the way a game rule does. */
handle(925, () => {
  throw new FireflyError("custom_code", "custom message");
});

/** 931: well behaved: returns its payload, decoded and re-encoded. */
handle(931, (_ctx: Ctx, payload: unknown) => payload);

/** 932: pushes its payload to its own session on topic 9320, then returns it. */
handle(932, (ctx: Ctx, payload: unknown) => {
  ctx.push(9320, payload as any);
  return payload as any;
});

/** 933: what the context says about this call. */
handle(933, (ctx: Ctx) => {
  log.info("context asked by session", ctx.session);
  return {
    session: ctx.session,
    command: ctx.command,
    now_micros: ctx.nowMicros(),
    random: Math.random(),
    user: ctx.user(),
  };
});

/** 934: binds the session to a user and joins a group. */
handle(934, (ctx: Ctx, req: { user: string; group: string }) => {
  ctx.bind(req.user);
  ctx.join(req.group);
  return { user: ctx.user() };
});

/** 935: pushes to a group, a user, and everyone. */
handle(935, (ctx: Ctx, req: { group: string; user: string; text: string }) => {
  ctx.pushGroup(req.group, 9351, { to: "group", text: req.text });
  ctx.pushUser(req.user, 9352, { to: "user", text: req.text });
  ctx.pushSessions([ctx.session], 9353, { to: "sessions", text: req.text });
  return null;
});

/** 936: kicks the calling session. */
handle(936, (ctx: Ctx) => ctx.kick(ctx.session));

/** 937: returns something MessagePack cannot carry (an integer past 64 bits). */
handle(937, () => ({ huge: 2n ** 70n }) as any);
