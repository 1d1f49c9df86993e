//! `firefly new <name> --lang ts`: scaffold a TypeScript module (`package.json`,
//! `tsconfig.json` pointing at the project's TypeScript SDK, `index.ts` with one handler).

use std::path::Path;

use anyhow::Context as _;

/// Writes the TypeScript module `name` into `dir` (which must not exist).
pub fn scaffold(name: &str, dir: &Path, command: u32) -> anyhow::Result<()> {
    let sdk = super::sdk_path::find_sdk()
        .map(|guest| guest.join("typescript"))
        .filter(|ts| ts.join("index.d.ts").exists())
        .context("cannot find the Firefly TypeScript SDK (guest-sdk/typescript): run `firefly new` inside a Firefly project")?;
    std::fs::create_dir_all(dir)?;
    let dir_abs = dir.canonicalize()?;
    let sdk_rel = super::sdk_path::relative(&dir_abs, &sdk);
    let package = format!(
        r#"{{
  "name": "{name}",
  "private": true,
  "description": "The `{name}` Firefly module, in TypeScript (build: firefly build {shown}).",
  "main": "index.ts"
}}
"#,
        shown = dir.display()
    );
    let tsconfig = format!(
        r#"{{
  "compilerOptions": {{
    "target": "ES2020",
    "module": "ES2020",
    "moduleResolution": "bundler",
    "strict": true,
    "noEmit": true,
    "skipLibCheck": true,
    "lib": ["ES2020"],
    "types": [],
    "paths": {{ "firefly-sdk": ["{sdk}"] }}
  }},
  "include": ["*.ts", "src/**/*.ts"]
}}
"#,
        sdk = sdk_rel.display()
    );
    let index = format!(
        r#"// The `{name}` module. Handlers are registered when the module loads; the payload is the
// request's MessagePack decoded to plain values, and what a handler returns is the reply.
import {{ FireflyError, handle, type Ctx, type SessionId }} from "firefly-sdk";

interface Ping {{
  text: string;
}}

interface Pong {{
  text: string;
  session: SessionId;
  server_time_micros: number;
}}

/** Command {command}: answers a ping. */
handle({command}, (ctx: Ctx, req: Ping): Pong => {{
  if (typeof req?.text !== "string") {{
    throw new FireflyError("bad_request", "send {{ text: string }}");
  }}
  ctx.log.info(`ping from session ${{ctx.session}}`);
  return {{ text: req.text, session: ctx.session, server_time_micros: ctx.nowMicros() }};
}});
"#,
        command = command
    );
    std::fs::write(dir.join("package.json"), package)?;
    std::fs::write(dir.join("tsconfig.json"), tsconfig)?;
    std::fs::write(dir.join("index.ts"), index)?;
    std::fs::write(dir.join(".gitignore"), "target/\nnode_modules/\n")?;
    println!("created TypeScript module `{name}` in {}", dir.display());
    println!("build it:  firefly build {}", dir.display());
    println!(
        "host it:   add it under `modules:` (crate: {}) and to a node in topology.yaml, then `firefly up`",
        dir.display()
    );
    println!("try it:    firefly call 127.0.0.1:11009 {command} '{{\"text\":\"hi\"}}'");
    Ok(())
}
