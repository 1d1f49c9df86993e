// `echo-ts`: the TypeScript twin of `modules/echo`. Command 1 returns its payload unchanged.
import { handle } from "firefly-sdk";

handle(1, (_ctx, payload) => payload, { raw: true });
