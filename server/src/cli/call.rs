//! `firefly call`: one request, printed as JSON.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use firefly::client::{Client, ClientError, msgpack_to_json};
use firefly::config::{ProtocolSettings, parse_duration};

/// Arguments of `firefly call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The gate's address, e.g. 127.0.0.1:11009.
    addr: String,
    /// The command id.
    command: u32,
    /// The request as JSON (sent as MessagePack). Omit for an empty payload.
    json: Option<String>,
    /// Send the argument's bytes as they are instead of converting JSON to MessagePack, and
    /// print the reply as text (or hex when it is not UTF-8).
    #[arg(long)]
    raw: bool,
    /// Magic bytes of the listener, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,0,0,0")]
    magic: Vec<u8>,
    /// Protocol version of the listener.
    #[arg(long, default_value_t = 0)]
    protocol_version: u8,
    /// Server version of the listener.
    #[arg(long, default_value_t = 0)]
    server_version: u32,
    /// How long to wait for the reply.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Connects to the gate, sends one request and prints the reply; an error frame is printed
/// as JSON and fails the command.
pub async fn call(args: CallArgs) -> anyhow::Result<()> {
    let magic: [u8; 4] = args
        .magic
        .as_slice()
        .try_into()
        .context("--magic takes exactly 4 comma-separated bytes")?;
    let settings = ProtocolSettings {
        magic,
        protocol_version: args.protocol_version,
        server_version: args.server_version,
        ..ProtocolSettings::default()
    };
    let payload = match (&args.json, args.raw) {
        (None, _) => Vec::new(),
        (Some(text), true) => text.as_bytes().to_vec(),
        (Some(text), false) => {
            let value: serde_json::Value = serde_json::from_str(text)
                .context("the request is not valid JSON (use --raw to send bytes as they are)")?;
            rmp_serde::to_vec_named(&value)?
        }
    };
    let mut client = Client::connect_with(args.addr.as_str(), &settings)
        .await
        .with_context(|| format!("cannot connect to {}", args.addr))?;
    client.set_timeout(args.timeout);
    match client.request(args.command, &payload).await {
        Ok(reply) => {
            println!("{}", render(&reply, args.raw));
            Ok(())
        }
        Err(ClientError::Server(err)) => {
            let json = serde_json::json!({ "error": err });
            println!("{}", serde_json::to_string_pretty(&json)?);
            anyhow::bail!("the server answered with error `{}`", err.code)
        }
        Err(err) => Err(err.into()),
    }
}

/// The reply as text: pretty JSON when it is one MessagePack value (unless `raw`), else
/// UTF-8, else hex.
fn render(reply: &[u8], raw: bool) -> String {
    if !raw {
        let mut cursor = reply;
        if let Ok(value) = rmpv::decode::read_value(&mut cursor)
            && cursor.is_empty()
        {
            let json = msgpack_to_json(&value);
            return serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string());
        }
    }
    match std::str::from_utf8(reply) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("hex:{}", hex::encode(reply)),
    }
}
