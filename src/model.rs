//! The JSON shapes the API receives and returns.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::time::Timestamp;

/// One DIUN notification (crazy-max/diun `internal/msg` RenderJSON), as received and as stored.
///
/// DIUN always sends every field; other senders may not, so missing strings become empty.
/// Fields DIUN may add in later releases land in `extra` and are kept and returned.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct DiunEvent {
    #[serde(default, deserialize_with = "string_or_null")]
    pub diun_version: String,
    #[serde(default, deserialize_with = "string_or_null")]
    pub hostname: String,
    #[serde(default, deserialize_with = "string_or_null")]
    pub status: String,
    #[serde(default, deserialize_with = "string_or_null")]
    pub provider: String,
    #[serde(default, deserialize_with = "string_or_null")]
    pub image: String,
    #[serde(default, deserialize_with = "string_or_null")]
    pub hub_link: String,
    #[serde(default, deserialize_with = "string_or_null")]
    pub mime_type: String,
    #[serde(default, deserialize_with = "string_or_null")]
    pub digest: String,
    /// DIUN's own RFC 3339 text, kept verbatim: it often carries nanoseconds, which a
    /// `timestamptz` would truncate.
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default, deserialize_with = "string_or_null")]
    pub platform: String,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DiunEvent {
    /// Parses a webhook body; the message is meant for the sender.
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        check_value_count(body)?;
        let mut event: Self = serde_json::from_slice(body).map_err(|err| {
            if err.is_data() {
                format!("invalid DIUN event: {err}")
            } else if err.to_string().starts_with("number out of range") {
                // Valid JSON, but beyond a double: no backend could keep it as a number.
                format!("a number is too large to store: {err}")
            } else {
                format!("invalid JSON: {err}")
            }
        })?;
        event.validate()?;
        // Numbers as jsonb keeps them, so that they are stored alike on every backend, the
        // event lists alike and a SQLite database moved to PostgreSQL compares equal to its copy.
        if let Some(metadata) = &mut event.metadata {
            map_numbers_as_jsonb_keeps_them(metadata);
        }
        map_numbers_as_jsonb_keeps_them(&mut event.extra);
        Ok(event)
    }

    fn validate(&self) -> Result<(), String> {
        if self.image.trim().is_empty() {
            return Err("the event has no `image`".into());
        }
        check_image(&self.image)?;
        if let Some(created) = &self.created
            && !Timestamp::is_rfc3339(created)
        {
            return Err(format!("`created` is not an RFC 3339 timestamp: {created:?}"));
        }
        // Neither PostgreSQL text nor jsonb can hold U+0000; refusing it on every backend keeps
        // the two stores answering alike.
        let has_nul = [
            &self.diun_version,
            &self.hostname,
            &self.status,
            &self.provider,
            &self.image,
            &self.hub_link,
            &self.mime_type,
            &self.digest,
            &self.platform,
        ]
        .iter()
        .any(|field| field.contains('\0'))
            || self.created.as_deref().is_some_and(|c| c.contains('\0'))
            || self.metadata.as_ref().is_some_and(map_has_nul)
            || map_has_nul(&self.extra);
        if has_nul {
            return Err("the event contains a NUL character (\\u0000), which cannot be stored".into());
        }
        Ok(())
    }

    /// `metadata` as JSON text for storage, `None` when DIUN sent null.
    pub fn metadata_json(&self) -> Option<String> {
        self.metadata.as_ref().map(object_json)
    }

    /// Unknown top-level fields as JSON text for storage, `None` when there are none.
    pub fn extra_json(&self) -> Option<String> {
        (!self.extra.is_empty()).then(|| object_json(&self.extra))
    }

    /// Restores the JSON columns written by [`Self::metadata_json`] and [`Self::extra_json`].
    pub fn set_json_columns(&mut self, metadata: Option<&str>, extra: Option<&str>) -> Result<(), String> {
        self.metadata = json_object(metadata)?;
        self.extra = json_object(extra)?.unwrap_or_default();
        Ok(())
    }
}

/// The most JSON values an event may hold; DIUN sends about twenty, and ten thousand metadata
/// keys beside ten thousand unknown fields still pass (tests/hostile.rs). Each value parsed is
/// 32 bytes or more (`[0,0,…]` is 2 bytes a value in the body), at every read of the event too:
/// a 1 MiB body of them cost 16–32 MiB per event read back, per host in `/api/hosts` and per
/// entry of a history page; at this bound, a few MiB at most.
pub const MAX_JSON_VALUES: usize = 32_768;

/// Refuses a body holding more than [`MAX_JSON_VALUES`] values, counted on the bytes before
/// any parsing: the body itself, the first element of each array or object (a key and its
/// value count as one), and every comma, outside strings. A body too short to hold that many
/// (each value takes a byte and its comma) is not scanned at all, DIUN's included.
fn check_value_count(body: &[u8]) -> Result<(), String> {
    if body.len() < 2 * MAX_JSON_VALUES {
        return Ok(());
    }
    let (mut values, mut in_string, mut escaped, mut opened) = (1, false, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if byte.is_ascii_whitespace() {
            continue;
        }
        if std::mem::take(&mut opened) && byte != b']' && byte != b'}' {
            values += 1;
        }
        match byte {
            b'"' => in_string = true,
            b',' => values += 1,
            b'[' | b'{' => opened = true,
            _ => {}
        }
    }
    if values > MAX_JSON_VALUES {
        return Err(format!(
            "the event holds about {values} JSON values, more than the {MAX_JSON_VALUES} accepted (DIUN sends about 20)"
        ));
    }
    Ok(())
}

/// The longest image name accepted, in bytes: far above what a registry allows (a name of
/// 255 characters, a tag of 128 and a digest), and small enough for a PostgreSQL index entry,
/// which refuses values of more than about 2.7 kB. Without this bound a long name was kept on
/// SQLite and answered 500 on PostgreSQL.
pub const MAX_IMAGE_LEN: usize = 1024;

/// Whether `image` can name an update: not blank, not longer than [`MAX_IMAGE_LEN`], no U+0000.
/// The message is meant for the sender.
pub fn check_image(image: &str) -> Result<(), String> {
    if image.trim().is_empty() {
        return Err("`image` is empty".into());
    }
    if image.len() > MAX_IMAGE_LEN {
        return Err(format!("`image` is longer than {MAX_IMAGE_LEN} bytes"));
    }
    if image.contains('\0') {
        return Err("`image` contains a NUL character (\\u0000), which cannot be stored".into());
    }
    Ok(())
}

/// The image named by a percent-encoded request path (`/` may also stand unencoded, so that
/// `curl -X PATCH …/api/updates/docker.io/library/nginx:1.27` works as typed).
pub fn decode_image_path(raw: &str) -> Result<String, String> {
    let image = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "the image in the path is not valid UTF-8 once decoded".to_string())?;
    check_image(&image).map_err(|problem| format!("the image in the path is invalid: {problem}"))?;
    Ok(image.into_owned())
}

/// A JSON object as text, without copying it first.
fn object_json(map: &Map<String, Value>) -> String {
    // Sized up front: grown from serde_json's 128 bytes, DIUN's metadata took three
    // reallocations on every webhook.
    let mut text = Vec::with_capacity(json_size_hint(map));
    // Serializing string keys and JSON values into memory cannot fail.
    if serde_json::to_writer(&mut text, map).is_err() {
        return "{}".to_string();
    }
    // serde_json writes valid UTF-8.
    String::from_utf8(text).unwrap_or_else(|_| "{}".to_string())
}

/// About the length of `map` as JSON text: exact for strings without escapes.
fn json_size_hint(map: &Map<String, Value>) -> usize {
    fn value_size(value: &Value) -> usize {
        match value {
            Value::String(text) => text.len() + 2,
            Value::Object(map) => json_size_hint(map),
            Value::Array(items) => items.iter().map(|item| value_size(item) + 1).sum::<usize>() + 2,
            Value::Null | Value::Bool(_) | Value::Number(_) => 24,
        }
    }
    map.iter().map(|(key, value)| key.len() + 4 + value_size(value)).sum::<usize>() + 2
}

fn map_has_nul(map: &Map<String, Value>) -> bool {
    map.iter().any(|(key, value)| key.contains('\0') || value_has_nul(value))
}

fn value_has_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(value_has_nul),
        Value::Object(map) => map_has_nul(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Every number in `map` as it comes back out of PostgreSQL's `jsonb` (a `numeric`, printed
/// in plain digits) and then serde_json: `-0.0` as `0.0` (numeric has no negative zero), and a
/// whole float of 1e16 or more that fits a 64-bit integer as that integer (serde_json prints
/// the float `1e16`, numeric prints `10000000000000000`, which serde_json reads as an integer).
pub fn map_numbers_as_jsonb_keeps_them(map: &mut Map<String, Value>) {
    map.values_mut().for_each(number_as_jsonb_keeps_it);
}

fn number_as_jsonb_keeps_it(value: &mut Value) {
    // 2^64 and -2^63, exactly representable: the bounds of u64 and i64 as floats.
    const U64_END: f64 = 18_446_744_073_709_551_616.0;
    const I64_MIN: f64 = -9_223_372_036_854_775_808.0;
    match value {
        Value::Number(number) if number.is_f64() => {
            let Some(x) = number.as_f64() else { return };
            if x == 0.0 && x.is_sign_negative() {
                *value = Value::from(0.0);
            } else if x.fract() == 0.0 && x.abs() >= 1e16 {
                // Exact casts: x is whole and within range.
                if (0.0..U64_END).contains(&x) {
                    *value = Value::from(x as u64);
                } else if (I64_MIN..0.0).contains(&x) {
                    *value = Value::from(x as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(number_as_jsonb_keeps_it),
        Value::Object(map) => map_numbers_as_jsonb_keeps_them(map),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

fn string_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub id: i64,
    pub name: String,
}

/// One tracked image as `GET /api/updates` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateEntry {
    pub event: DiunEvent,
    pub received_at: Timestamp,
    /// `None` while the update is pending.
    pub acknowledged_at: Option<Timestamp>,
    pub tag: Option<Tag>,
}

impl Serialize for UpdateEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut entry = serializer.serialize_struct("UpdateEntry", 5)?;
        entry.serialize_field("event", &self.event)?;
        entry.serialize_field("received_at", &self.received_at)?;
        entry.serialize_field("acknowledged", &self.acknowledged_at.is_some())?;
        entry.serialize_field("acknowledged_at", &self.acknowledged_at)?;
        entry.serialize_field("tag", &self.tag)?;
        entry.end()
    }
}

/// One accepted webhook, as `GET /api/updates/{image}/history` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub hostname: String,
    pub status: String,
    pub digest: String,
    pub created: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub received_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
}

/// A host that reported an image since the image last became pending.
#[derive(Clone, Debug, Serialize)]
pub struct HostReport {
    #[serde(skip)]
    pub image: String,
    pub hostname: String,
    pub last_seen: Timestamp,
    /// The metadata of that host's latest event (its container names, say).
    pub metadata: Option<StoredObject>,
}

/// A stored JSON object, in the text serde_json writes for it, put into an answer as it is:
/// parsed and written again, the metadata of thousands of hosts' reports took as long as the
/// query that read them.
#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct StoredObject(Box<serde_json::value::RawValue>);

impl StoredObject {
    /// `text` as serde_json writes an object; checked to be one, since an answer copies it.
    pub fn new(text: String) -> Result<Self, String> {
        let raw = serde_json::value::RawValue::from_string(text)
            .map_err(|err| format!("stored JSON is invalid: {err}"))?;
        if !raw.get().starts_with('{') {
            return Err("stored JSON is not an object".to_string());
        }
        Ok(Self(raw))
    }
}

/// Restores a JSON object column; `None` stays `None`.
pub fn json_object(text: Option<&str>) -> Result<Option<Map<String, Value>>, String> {
    text.map(|text| match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("stored JSON is not an object".to_string()),
        Err(err) => Err(format!("stored JSON is invalid: {err}")),
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_of_too_many_json_values_is_refused_before_it_is_parsed() {
        let event = |metadata: Value| {
            serde_json::to_vec(&serde_json::json!({ "image": "i:1", "metadata": metadata })).unwrap()
        };
        let zeros = event(serde_json::json!({ "k": vec![0; MAX_JSON_VALUES] }));
        let refused = DiunEvent::from_json(&zeros).unwrap_err();
        assert!(refused.contains("JSON values"), "{refused}");
        // Counted exactly: the body, image, metadata, k and k's elements.
        let at_the_bound =
            event(serde_json::json!({ "k": vec![serde_json::json!({}); MAX_JSON_VALUES - 4] }));
        assert!(DiunEvent::from_json(&at_the_bound).is_ok());
        let one_more = event(serde_json::json!({ "k": vec![serde_json::json!([]); MAX_JSON_VALUES - 3] }));
        assert!(
            DiunEvent::from_json(&one_more).unwrap_err().contains(&format!("about {}", MAX_JSON_VALUES + 1))
        );

        // Commas, brackets and escaped quotes inside strings are text, not values.
        let text = event(serde_json::json!({ "k": "\",[{".repeat(MAX_JSON_VALUES) }));
        assert!(text.len() > 2 * MAX_JSON_VALUES, "long enough to be scanned");
        assert!(DiunEvent::from_json(&text).is_ok());
        let pairs: Map<String, Value> = (0..MAX_JSON_VALUES / 2)
            .map(|i| (format!("key{i}"), Value::from(format!("value {i}"))))
            .collect();
        let many_pairs = event(Value::Object(pairs));
        assert!(many_pairs.len() > 2 * MAX_JSON_VALUES, "long enough to be scanned");
        assert_eq!(DiunEvent::from_json(&many_pairs).unwrap().metadata.unwrap().len(), MAX_JSON_VALUES / 2);
    }

    #[test]
    fn whole_floats_of_1e16_and_more_are_stored_as_the_integers_jsonb_gives_back() {
        let body = br#"{"image": "i:1", "metadata": {"a": 1e16, "b": -1.5e16, "c": 1.8446744073709550e19,
            "d": 1e20, "e": -1e19, "f": 1e15, "g": 12.5e16, "h": 9007199254740993, "i": [1e17]}}"#;
        let event = DiunEvent::from_json(body).unwrap();
        assert_eq!(
            event.metadata_json().unwrap(),
            r#"{"a":10000000000000000,"b":-15000000000000000,"c":18446744073709549568,"d":1e+20,"e":-1e+19,"f":1000000000000000.0,"g":125000000000000000,"h":9007199254740993,"i":[100000000000000000]}"#
        );
    }

    #[test]
    fn negative_zeros_are_stored_as_zero_wherever_they_are() {
        let body = br#"{"image": "i:1", "metadata": {"a": -0.0, "b": [1, {"c": -0}], "d": -1.5, "e": "-0.0"},
            "unknown": -0.0, "nested": {"list": [-0.0, 0]}}"#;
        let event = DiunEvent::from_json(body).unwrap();
        assert_eq!(event.metadata_json().unwrap(), r#"{"a":0.0,"b":[1,{"c":0.0}],"d":-1.5,"e":"-0.0"}"#);
        assert_eq!(event.extra_json().unwrap(), r#"{"nested":{"list":[0.0,0]},"unknown":0.0}"#);
    }

    #[test]
    fn images_are_bounded_and_free_of_nul() {
        assert!(check_image("docker.io/library/nginx:1.27").is_ok());
        assert!(check_image(&"x".repeat(MAX_IMAGE_LEN)).is_ok());
        assert!(check_image(&"x".repeat(MAX_IMAGE_LEN + 1)).unwrap_err().contains("longer"));
        assert!(check_image(" \t").unwrap_err().contains("empty"));
        assert!(check_image("a\0b").unwrap_err().contains("NUL"));
    }

    #[test]
    fn an_overlong_image_is_refused_at_intake() {
        let body = serde_json::json!({ "image": "x".repeat(MAX_IMAGE_LEN + 1) }).to_string();
        assert!(DiunEvent::from_json(body.as_bytes()).unwrap_err().contains("longer"));
    }

    #[test]
    fn image_paths_decode_or_explain_why_not() {
        assert_eq!(decode_image_path("ghcr.io%2Fo%2Fapp%40sha256%3Aab").unwrap(), "ghcr.io/o/app@sha256:ab");
        assert!(decode_image_path("bad%FF").unwrap_err().contains("UTF-8"));
        assert!(decode_image_path("nul%00").unwrap_err().contains("NUL"));
        assert!(decode_image_path(&"%41".repeat(MAX_IMAGE_LEN + 1)).unwrap_err().contains("longer"));
    }
}
