use super::*;

fn field(name: &str, ty: FieldType) -> FieldSchema {
    FieldSchema {
        name: name.into(),
        ty,
        nullable: false,
        defaulted: false,
        indexed: false,
    }
}

fn players() -> TableSchema {
    TableSchema {
        name: "players".into(),
        key: "id".into(),
        fields: vec![field("id", FieldType::Int), field("name", FieldType::Text)],
        rank: None,
    }
}

#[test]
fn additive_changes_are_allowed() {
    let old = players();
    let mut new = players();
    new.fields.push(FieldSchema {
        nullable: true,
        ..field("guild", FieldType::Text)
    });
    new.fields.push(FieldSchema {
        defaulted: true,
        ..field("level", FieldType::Int)
    });
    new.fields[1].indexed = true;
    check_upgrade(&old, &new).unwrap();
}

#[test]
fn destructive_changes_are_refused_naming_table_and_field() {
    let old = players();
    let mut dropped = players();
    dropped.fields.pop();
    assert_eq!(
        check_upgrade(&old, &dropped).unwrap_err().to_string(),
        "table `players`: field `name` was removed; dropping a column is a destructive change (keep the field, e.g. as an Option)"
    );
    let mut retyped = players();
    retyped.fields[1].ty = FieldType::Int;
    assert_eq!(
        check_upgrade(&old, &retyped).unwrap_err().to_string(),
        "table `players`: field `name` changed type from text to int; retyping a column is a destructive change"
    );
    let mut required = players();
    required.fields.push(field("gold", FieldType::Int));
    assert_eq!(
        check_upgrade(&old, &required).unwrap_err().to_string(),
        "table `players`: new field `gold` must be an Option or #[serde(default)]: existing rows have no value for it"
    );
    let mut rekeyed = players();
    rekeyed.key = "name".into();
    assert!(
        check_upgrade(&old, &rekeyed)
            .unwrap_err()
            .to_string()
            .contains("changing the key is a destructive change")
    );
}

#[test]
fn objects_are_checked_field_by_field() {
    let t = players();
    let enc = |v: Value| {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).unwrap();
        out
    };
    let good = enc(Value::Map(vec![
        (Value::from("id"), Value::from(7)),
        (Value::from("name"), Value::from("ann")),
    ]));
    let (key, values) = check_object(&t, &good, 1024).unwrap();
    assert_eq!(key, Key::Int(7));
    assert_eq!(values[1], SqlValue::Text("ann".into()));
    assert_eq!(encode_row(&t, &values), good);
    let wrong = enc(Value::Map(vec![
        (Value::from("id"), Value::from(7)),
        (Value::from("name"), Value::from(3)),
    ]));
    assert_eq!(
        check_object(&t, &wrong, 1024).unwrap_err(),
        DataError::Invalid("field `name` of table `players` is a text, got an int".into())
    );
    let unknown = enc(Value::Map(vec![
        (Value::from("id"), Value::from(7)),
        (Value::from("name"), Value::from("x")),
        (Value::from("hp"), Value::from(1)),
    ]));
    assert_eq!(
        check_object(&t, &unknown, 1024).unwrap_err(),
        DataError::Invalid("table `players` has no field `hp`".into())
    );
    assert!(matches!(
        check_object(&t, &good, 4),
        Err(DataError::TooLarge(_))
    ));
    assert!(matches!(
        check_object(&t, &enc(Value::from(1)), 1024),
        Err(DataError::Invalid(_))
    ));
}

#[test]
fn identifiers_are_strict() {
    for ok in ["players", "a1", "item_owner"] {
        assert!(valid_ident(ok), "{ok}");
    }
    for bad in [
        "",
        "Players",
        "1a",
        "_x",
        "a-b",
        "a\"b",
        "a b",
        &"x".repeat(49),
    ] {
        assert!(!valid_ident(bad), "{bad}");
    }
}
