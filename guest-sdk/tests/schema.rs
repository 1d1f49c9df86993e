//! `#[derive(Schema)]` says what serde writes: names after `rename`/`rename_all`, skipped and
//! optional fields, enum representations, transparent and newtype structs. Each type's
//! description is checked against its JSON serialisation (serde's names are the same in every
//! format) and against the exact description expected.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

use std::collections::BTreeMap;

use firefly_sdk::schema::{Command, Module, Push, Schema, json_len, write_json};
use serde::Serialize;
use serde_json::{Value, json};

/// A thing.
#[derive(Serialize, Schema)]
#[serde(rename_all = "camelCase")]
struct Thing {
    /// Whose.
    player_id: u64,
    #[serde(rename = "n")]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(skip)]
    #[allow(
        dead_code,
        reason = "skipped by serde: the test checks it is not described"
    )]
    secret: u32,
    tags: BTreeMap<String, Vec<u8>>,
    pair: (u8, bool),
    kind: Kind,
    #[schema(any)]
    extra: Opaque,
}

/// No description of its own.
#[derive(Serialize)]
struct Opaque {
    x: i32,
}

#[derive(Serialize, Schema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Kind {
    FirstOne,
    Second(u32),
    ThirdOne { x_pos: i8 },
}

#[derive(Serialize, Schema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    PlayerJoined { who: String },
    Left,
}

#[derive(Serialize, Schema)]
struct Id(u64);

#[derive(Serialize, Schema)]
#[serde(transparent)]
struct Wrapper {
    inner: String,
}

const MODULE: Module = Module {
    name: "test",
    commands: &[
        Command {
            id: 1,
            name: "thing",
            doc: "",
            request: <Thing as Schema>::TYPE,
            reply: <Vec<Event> as Schema>::TYPE,
        },
        Command {
            id: 2,
            name: "ids",
            doc: "",
            request: <(Id, Wrapper) as Schema>::TYPE,
            reply: <firefly_sdk::Raw as Schema>::TYPE,
        },
    ],
    pushes: &[Push {
        topic: 9,
        name: "unit",
        doc: "",
        payload: <() as Schema>::TYPE,
    }],
};
const LEN: usize = json_len(&MODULE);
static JSON: [u8; LEN] = write_json::<LEN>(&MODULE);

fn description() -> Value {
    serde_json::from_slice(&JSON).unwrap()
}

/// The field names a struct's description lists.
fn field_names(ty: &Value) -> Vec<String> {
    ty["struct"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn struct_fields_are_named_as_serde_writes_them() {
    let d = description();
    let thing = &d["commands"][0]["request"];
    let value = serde_json::to_value(Thing {
        player_id: 1,
        name: "n".into(),
        note: Some("x".into()),
        secret: 7,
        tags: BTreeMap::new(),
        pair: (1, true),
        kind: Kind::FirstOne,
        extra: Opaque { x: 1 },
    })
    .unwrap();
    let written: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    let mut described = field_names(thing);
    described.sort();
    let mut written_sorted = written.clone();
    written_sorted.sort();
    assert_eq!(described, written_sorted);
    assert_eq!(
        thing["struct"]["fields"],
        json!([
            {"name": "playerId", "doc": "Whose.", "optional": false, "type": "u64"},
            {"name": "n", "doc": "", "optional": false, "type": "string"},
            {"name": "note", "doc": "", "optional": true, "type": {"option": "string"}},
            {"name": "tags", "doc": "", "optional": false, "type": {"map": ["string", {"list": "u8"}]}},
            {"name": "pair", "doc": "", "optional": false, "type": {"tuple": ["u8", "bool"]}},
            {"name": "kind", "doc": "", "optional": false, "type": thing["struct"]["fields"][5]["type"]},
            {"name": "extra", "doc": "", "optional": false, "type": "any"},
        ])
    );
    assert_eq!(thing["struct"]["name"], "Thing");
    assert_eq!(thing["struct"]["doc"], "A thing.");
}

#[test]
fn enum_variants_are_named_and_tagged_as_serde_writes_them() {
    let d = description();
    let kind = &d["commands"][0]["request"]["struct"]["fields"][5]["type"]["enum"];
    assert_eq!(kind["repr"], "external");
    let names: Vec<&str> = kind["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["FIRST_ONE", "SECOND", "THIRD_ONE"]);
    assert_eq!(
        serde_json::to_value(Kind::FirstOne).unwrap(),
        json!("FIRST_ONE")
    );
    assert_eq!(
        serde_json::to_value(Kind::Second(2)).unwrap(),
        json!({"SECOND": 2})
    );
    assert_eq!(
        serde_json::to_value(Kind::ThirdOne { x_pos: 1 }).unwrap(),
        json!({"THIRD_ONE": {"x_pos": 1}})
    );
    assert_eq!(kind["variants"][1]["kind"], json!({"newtype": "u32"}));
    assert_eq!(
        kind["variants"][2]["kind"]["struct"][0]["name"],
        json!("x_pos")
    );

    let event = &d["commands"][0]["reply"]["list"]["enum"];
    assert_eq!(event["repr"], json!({"internal": {"tag": "type"}}));
    assert_eq!(event["variants"][0]["name"], "player_joined");
    assert_eq!(
        serde_json::to_value(Event::PlayerJoined { who: "a".into() }).unwrap(),
        json!({"type": "player_joined", "who": "a"})
    );
    assert_eq!(
        serde_json::to_value(Event::Left).unwrap(),
        json!({"type": "left"})
    );
}

#[test]
fn newtypes_and_transparent_structs_are_their_content() {
    let d = description();
    assert_eq!(
        d["commands"][1]["request"],
        json!({"tuple": ["u64", "string"]})
    );
    assert_eq!(
        serde_json::to_value((Id(5), Wrapper { inner: "x".into() })).unwrap(),
        json!([5, "x"])
    );
    assert_eq!(d["commands"][1]["reply"], "raw");
    assert_eq!(
        d["pushes"][0],
        json!({"topic": 9, "name": "unit", "doc": "", "payload": "unit"})
    );
    assert_eq!(d["format"], 1);
    assert_eq!(d["module"], "test");
}
