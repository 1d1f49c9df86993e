//! The generators on a description covering every kind of type (the generated code itself is
//! compiled and used against a cluster in `server/tests/typed_clients_processes.rs`).

use super::*;

/// A description as the guest SDK writes it: every leaf, containers, a renamed field, an
/// optional one, a unit-only enum and one with data, a raw command and a unit one.
const SCHEMA: &str = r#"{"format":1,"module":"game-shop","commands":[
 {"id":7,"name":"buy_item","doc":"Buys it.\nTwice.","request":{"struct":{"name":"Buy","doc":"","fields":[
   {"name":"item","doc":"What.","optional":false,"type":"string"},
   {"name":"from","doc":"","optional":false,"type":"u64"},
   {"name":"qty","doc":"","optional":true,"type":{"option":"u32"}},
   {"name":"tags","doc":"","optional":false,"type":{"map":["string",{"list":{"enum":{"name":"Keep","doc":"","repr":"external","variants":[{"name":"best","doc":"","kind":"unit"},{"name":"last","doc":"","kind":"unit"}]}}}]}}]}},
  "reply":{"enum":{"name":"Outcome","doc":"","repr":"external","variants":[{"name":"Done","doc":"","kind":"unit"},{"name":"Short","doc":"","kind":{"newtype":"i64"}},{"name":"Moved","doc":"","kind":{"struct":[{"name":"to","doc":"","optional":false,"type":"bytes"}]}}]}}},
 {"id":8,"name":"ping","doc":"","request":"raw","reply":"raw"},
 {"id":9,"name":"state","doc":"","request":"unit","reply":{"tuple":["f64","bool","any"]}}],
 "pushes":[{"topic":70,"name":"sold_out","doc":"","payload":{"struct":{"name":"Buy","doc":"","fields":[]}}}]}"#;

fn schema() -> ModuleSchema {
    serde_json::from_str(SCHEMA).unwrap()
}

/// A minimal wasm binary holding one custom section.
fn wasm_with(name: &str, contents: &[u8]) -> Vec<u8> {
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name.as_bytes());
    section.extend_from_slice(contents);
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    // A type section first (empty), then the custom one with a two-byte LEB128 size.
    wasm.extend_from_slice(&[1, 1, 0]);
    wasm.push(0);
    let len = section.len();
    wasm.extend_from_slice(&[(len as u8 & 0x7f) | 0x80, (len >> 7) as u8]);
    wasm.extend_from_slice(&section);
    wasm
}

#[test]
fn the_section_is_found_and_read() {
    let wasm = wasm_with(SECTION, SCHEMA.as_bytes());
    let read = read_schema(&wasm).unwrap();
    assert_eq!(read.module, "game-shop");
    assert_eq!(read.commands.len(), 3);
    let without = wasm_with("name", b"x");
    let err = read_schema(&without).unwrap_err().to_string();
    assert!(err.contains("no `firefly.schema` section"), "{err}");
    assert!(read_schema(b"not wasm").is_err());
    let mut truncated = wasm.clone();
    truncated.truncate(wasm.len() - 3);
    assert!(read_schema(&truncated).is_err());
}

#[test]
fn names_convert_between_spellings() {
    assert_eq!(pascal("game-shop"), "GameShop");
    assert_eq!(pascal("channel_message"), "ChannelMessage");
    assert_eq!(camel("buy_item"), "buyItem");
    assert_eq!(snake("ChannelMessage"), "channel_message");
    assert_eq!(pascal("v2_board"), "V2Board");
}

#[test]
fn named_types_come_once_after_what_they_use() {
    let names: Vec<String> = named_types(&schema())
        .iter()
        .map(|n| n.name().to_owned())
        .collect();
    assert_eq!(names, ["Keep", "Buy", "Outcome"]);
}

#[test]
fn typescript_has_typed_methods_and_pushes() {
    let ts = typescript::generate(&schema());
    for expected in [
        "export interface Buy {",
        "  from: number | bigint;",
        "  qty?: number | null;",
        "  tags: Record<string, Array<Keep>>;",
        "export type Keep =\n  | \"best\"\n  | \"last\";",
        "  | { Short: number | bigint }",
        "buyItem(request: Buy, options?: RequestOptions): Promise<Outcome>",
        "ping(request: Uint8Array, options?: RequestOptions): Promise<Uint8Array>",
        "state(options?: RequestOptions): Promise<[number, boolean, unknown]>",
        "onSoldOut(listener: (payload: Buy) => void): () => void",
        "export class GameShopClient {",
        "export const GAME_SHOP_COMMANDS = {",
    ] {
        assert!(ts.contains(expected), "missing {expected:?} in\n{ts}");
    }
}

#[test]
fn python_has_typed_dicts_and_methods() {
    let py = python::generate(&schema());
    for expected in [
        "_Buy = _t.TypedDict(\"_Buy\", {\"item\": str, \"from\": int, \"tags\": dict[str, list[Keep]]})",
        "_BuyOptional = _t.TypedDict(\"_BuyOptional\", {\"qty\": _t.Optional[int]}, total=False)",
        "class Buy(_Buy, _BuyOptional):",
        "Keep = _t.Literal[\"best\", \"last\"]",
        "Outcome = _t.Union[_t.Literal[\"Done\"], OutcomeShort, OutcomeMoved]",
        "async def buy_item(self, request: Buy, *, timeout: _t.Optional[float] = None) -> Outcome:",
        "async def ping(self, request: bytes, *, timeout",
        "async def state(self, *, timeout: _t.Optional[float] = None) -> list[_t.Union[float, bool, _t.Any]]:",
        "def on_sold_out(self, callback: _t.Callable[[Buy], _t.Any]) -> _t.Callable[[], None]:",
    ] {
        assert!(py.contains(expected), "missing {expected:?} in\n{py}");
    }
}

#[test]
fn csharp_has_classes_and_conversions() {
    let cs = csharp::generate(&schema());
    for expected in [
        "namespace Firefly.Modules.GameShop",
        "public sealed class Buy : IMsgPackValue",
        "public uint? Qty;",
        "public Dictionary<string, List<Keep>> Tags;",
        "m[\"tags\"] = FireflyWire.MapOut(Tags, x0 => (object)FireflyWire.ListOut(x0, x1 => (object)KeepWire.Encode(x1)));",
        "case \"best\": return Keep.Best;",
        "public Task<object> BuyItemAsync(Buy request, TimeSpan? timeout = null)",
        "public Task<byte[]> PingAsync(byte[] request, TimeSpan? timeout = null)",
        "public IDisposable OnSoldOut(Action<Buy> handler)",
    ] {
        assert!(cs.contains(expected), "missing {expected:?} in\n{cs}");
    }
}
