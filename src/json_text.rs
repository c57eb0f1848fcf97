//! JSON text as PostgreSQL prints `jsonb`, rewritten to the bytes serde_json writes for the
//! same value.
//!
//! SQLite keeps an event's JSON objects as serde_json wrote them: no blanks, keys in byte order.
//! `jsonb` prints its own way: `", "` and `": "`, keys shortest first, numbers as `numeric`
//! prints them (`1e300` as 301 digits). The listing copies stored text instead of parsing it
//! (for thousands of images that parse was most of the listing's time), so PostgreSQL's text is
//! rewritten here in one pass, and both backends list the same bytes (SPEC §5).

/// Appends `text` (valid JSON) to `out` as `serde_json::to_writer` writes the parsed value.
pub fn write_as_serde(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    let start = out.len();
    let mut rewrite = Rewrite { text: text.as_bytes(), at: 0 };
    let rewritten = rewrite.value(out).and_then(|()| {
        rewrite.skip_blanks();
        if rewrite.at == rewrite.text.len() { Ok(()) } else { Err(Unusual) }
    });
    if rewritten.is_err() {
        // Escaped keys (which sort by their unescaped bytes) and anything unexpected: parsed
        // and written whole. Slower, and rare.
        out.truncate(start);
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|err| format!("stored JSON is invalid: {err}"))?;
        serde_json::to_writer(&mut *out, &value).map_err(|err| err.to_string())?;
    }
    Ok(())
}

/// [`write_as_serde`] for an object whose members are spliced into another: without its braces.
pub fn write_members_as_serde(out: &mut Vec<u8>, object: &str) -> Result<(), String> {
    let start = out.len();
    write_as_serde(out, object)?;
    if out.get(start) != Some(&b'{') || out.last() != Some(&b'}') {
        out.truncate(start);
        return Err("stored JSON is not an object".into());
    }
    out.pop();
    out.remove(start);
    Ok(())
}

/// The text is not in the shape this rewrite handles; the caller parses it instead.
struct Unusual;

struct Rewrite<'a> {
    text: &'a [u8],
    at: usize,
}

/// A member's value: as it stands in the text (strings, literals, small integers: most of
/// what DIUN sends), or rewritten into the object's own buffer.
enum Piece<'a> {
    AsIs(&'a [u8]),
    Rewritten(std::ops::Range<usize>),
}

impl<'a> Rewrite<'a> {
    fn skip_blanks(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn value(&mut self, out: &mut Vec<u8>) -> Result<(), Unusual> {
        match self.piece(out)? {
            Piece::AsIs(text) => out.extend_from_slice(text),
            Piece::Rewritten(_) => {}
        }
        Ok(())
    }

    /// Reads one value; what needs rewriting is rewritten at the end of `rewritten`.
    fn piece(&mut self, rewritten: &mut Vec<u8>) -> Result<Piece<'a>, Unusual> {
        self.skip_blanks();
        let start = rewritten.len();
        match self.text.get(self.at) {
            Some(b'{') => self.object(rewritten)?,
            Some(b'[') => self.array(rewritten)?,
            // jsonb escapes exactly the characters serde_json escapes, the same way.
            Some(b'"') => return self.string().map(Piece::AsIs),
            Some(b't' | b'f' | b'n') => {
                let rest = &self.text[self.at..];
                let literal =
                    [&b"true"[..], b"false", b"null"].into_iter().find(|literal| rest.starts_with(literal));
                let literal = literal.ok_or(Unusual)?;
                self.at += literal.len();
                return Ok(Piece::AsIs(literal));
            }
            Some(_) => {
                let token = self.number_token();
                let digits = token.strip_prefix(b"-").unwrap_or(token);
                // Up to 18 digits always fit an i64, which serde_json prints as it is.
                if !digits.is_empty()
                    && digits.len() <= 18
                    && digits.iter().all(u8::is_ascii_digit)
                    && token != b"-0"
                {
                    return Ok(Piece::AsIs(token));
                }
                let number: serde_json::Number = serde_json::from_slice(token).map_err(|_| Unusual)?;
                serde_json::to_writer(&mut *rewritten, &number).map_err(|_| Unusual)?;
            }
            None => return Err(Unusual),
        }
        Ok(Piece::Rewritten(start..rewritten.len()))
    }

    /// A string with its quotes, as it stands in the text.
    fn string(&mut self) -> Result<&'a [u8], Unusual> {
        let start = self.at;
        self.at += 1;
        loop {
            let rest = self.text.get(self.at..).ok_or(Unusual)?;
            let stop = memchr::memchr2(b'"', b'\\', rest).ok_or(Unusual)?;
            self.at += stop;
            if self.text[self.at] == b'"' {
                self.at += 1;
                return Ok(&self.text[start..self.at]);
            }
            self.at += 2;
        }
    }

    fn number_token(&mut self) -> &'a [u8] {
        let start = self.at;
        while matches!(self.text.get(self.at), Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
            self.at += 1;
        }
        &self.text[start..self.at]
    }

    fn array(&mut self, out: &mut Vec<u8>) -> Result<(), Unusual> {
        self.at += 1;
        out.push(b'[');
        self.skip_blanks();
        if self.text.get(self.at) == Some(&b']') {
            self.at += 1;
            out.push(b']');
            return Ok(());
        }
        loop {
            self.value(out)?;
            self.skip_blanks();
            match self.text.get(self.at) {
                Some(b',') => out.push(b','),
                Some(b']') => {
                    self.at += 1;
                    out.push(b']');
                    return Ok(());
                }
                _ => return Err(Unusual),
            }
            self.at += 1;
        }
    }

    fn object(&mut self, out: &mut Vec<u8>) -> Result<(), Unusual> {
        self.at += 1;
        self.skip_blanks();
        if self.text.get(self.at) == Some(&b'}') {
            self.at += 1;
            out.extend_from_slice(b"{}");
            return Ok(());
        }
        // Each member's key as it stands, and its value.
        let mut members: Vec<(&'a [u8], Piece<'a>)> = Vec::with_capacity(8);
        let mut rewritten = Vec::new();
        loop {
            self.skip_blanks();
            if self.text.get(self.at) != Some(&b'"') {
                return Err(Unusual);
            }
            let key = self.string()?;
            if key.contains(&b'\\') {
                return Err(Unusual);
            }
            self.skip_blanks();
            if self.text.get(self.at) != Some(&b':') {
                return Err(Unusual);
            }
            self.at += 1;
            let piece = self.piece(&mut rewritten)?;
            members.push((key, piece));
            self.skip_blanks();
            match self.text.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(Unusual),
            }
        }
        // Without escapes a key's text between its quotes is its bytes: serde_json's map order.
        let unquoted = |key: &'a [u8]| &key[1..key.len() - 1];
        members.sort_unstable_by(|a, b| unquoted(a.0).cmp(unquoted(b.0)));
        if members.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            // A repeated key (which jsonb never prints): the parse decides which one stays.
            return Err(Unusual);
        }
        out.push(b'{');
        for (i, (key, piece)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            out.push(b':');
            out.extend_from_slice(match piece {
                Piece::AsIs(text) => text,
                Piece::Rewritten(range) => &rewritten[range],
            });
        }
        out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    fn rewritten(text: &str) -> String {
        let mut out = Vec::new();
        write_as_serde(&mut out, text).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// `value` printed the way PostgreSQL prints jsonb: `", "` and `": "`, keys by length and
    /// then bytes.
    fn as_jsonb_prints(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(key, value)| format!("{}: {}", Value::from(key.as_str()), as_jsonb_prints(value)))
                    .collect();
                format!("{{{}}}", members.join(", "))
            }
            Value::Array(items) => {
                format!("[{}]", items.iter().map(as_jsonb_prints).collect::<Vec<_>>().join(", "))
            }
            other => other.to_string(),
        }
    }

    #[test]
    fn a_docker_event_metadata_comes_out_as_serde_writes_it() {
        let printed = r#"{"ctn_id": "abc123", "ctn_size": "0B", "ctn_names": "web", "ctn_state": "running", "ctn_status": "Up 2 hours", "ctn_command": "nginx -g 'daemon off;'", "ctn_createdat": "2024-05-14 18:21:39 +0000 UTC"}"#;
        let value: Value = serde_json::from_str(printed).unwrap();
        assert_eq!(rewritten(printed), value.to_string());
    }

    #[test]
    fn numbers_come_out_as_serde_writes_the_value_jsonb_printed() {
        let big = format!("15{}", "0".repeat(299));
        for (printed, serde) in [
            ("1.5", "1.5"),
            ("100.0", "100.0"),
            ("-1.25", "-1.25"),
            ("0", "0"),
            ("0.0", "0.0"),
            ("-7", "-7"),
            ("123456789012345678", "123456789012345678"),
            ("12345678901234567890", "12345678901234567890"),
            ("123456789012345680000000000000", "1.2345678901234568e+29"),
            (big.as_str(), "1.5e+300"),
            ("0.0000001", "1e-7"),
        ] {
            assert_eq!(
                rewritten(&format!("{{\"n\": {printed}}}")),
                format!("{{\"n\":{serde}}}"),
                "{printed}"
            );
            let expected = serde_json::from_str::<Value>(printed).unwrap().to_string();
            assert_eq!(serde, expected, "the table is serde_json's own output for {printed}");
        }
    }

    #[test]
    fn escaped_keys_and_repeated_keys_go_through_the_parser() {
        let printed = r#"{"b\"q": 1, "a": {"\u00e9": [true, null]}, "a\\": 2}"#;
        let value: Value = serde_json::from_str(printed).unwrap();
        assert_eq!(rewritten(printed), value.to_string());
        assert_eq!(rewritten(r#"{"k": 1, "k": 2}"#), r#"{"k":2}"#);
    }

    #[test]
    fn members_are_spliced_without_braces() {
        let mut out = b"{\"image\":\"x\"".to_vec();
        out.push(b',');
        write_members_as_serde(&mut out, r#"{"zeta": 1, "alpha": [1, 2]}"#).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"image":"x","alpha":[1,2],"zeta":1"#);
        let mut out = Vec::new();
        write_members_as_serde(&mut out, "{}").unwrap();
        assert!(out.is_empty());
        assert!(write_members_as_serde(&mut out, "[1]").is_err());
        assert!(out.is_empty(), "nothing is left behind");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
            "[\\x01-\\x1f\"\\\\/\u{7f}\u{2028}é😀a]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_é😀 ]{0,8}", inner, 0..8)
                    .prop_map(|map| Value::Object(map.into_iter().collect::<Map<String, Value>>())),
            ]
        })
    }

    /// A number's text as PostgreSQL's `numeric` prints what it read: the same value in plain
    /// digits, no exponent (`1.5e+300` as 301 digits, `1e-7` as `0.0000001`).
    fn as_numeric_prints(text: &str) -> String {
        let (sign, unsigned) = text.strip_prefix('-').map_or(("", text), |rest| ("-", rest));
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().unwrap()),
            None => return text.to_string(),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{whole}{fraction}");
        let point = whole.len() as i64 + exponent;
        let plain = if point >= digits.len() as i64 {
            format!("{digits}{}", "0".repeat((point - digits.len() as i64) as usize))
        } else if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{plain}")
    }

    #[test]
    fn numeric_prints_as_postgresql_does() {
        for (serde, numeric) in [
            ("1.5e+300", format!("15{}", "0".repeat(299))),
            ("1e-7", "0.0000001".into()),
            ("-2.5e-3", "-0.0025".into()),
            ("12.5", "12.5".into()),
            ("1.25e+2", "125".into()),
        ] {
            assert_eq!(as_numeric_prints(serde), numeric);
        }
    }

    proptest! {
        /// Whatever number an event holds, once intake has stored it as jsonb keeps it, the text
        /// PostgreSQL prints for it comes out as serde_json writes it (as SQLite stored it).
        #[test]
        fn numbers_list_alike_on_both_backends(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
            let mut stored = serde_json::Map::new();
            stored.insert("n".into(), Value::from(x));
            crate::model::map_numbers_as_jsonb_keeps_them(&mut stored);
            let as_sqlite_lists = Value::Object(stored.clone()).to_string();
            let number = stored["n"].to_string();
            let as_postgresql_prints = format!("{{\"n\": {}}}", as_numeric_prints(&number));
            prop_assert_eq!(rewritten(&as_postgresql_prints), as_sqlite_lists);
        }

        /// Whatever the value, its jsonb-style text comes out as serde_json writes the value.
        #[test]
        fn jsonb_style_text_comes_out_as_serde_writes_the_value(value in json_value()) {
            let object = json!({ "v": value });
            prop_assert_eq!(rewritten(&as_jsonb_prints(&object)), object.to_string());
        }
    }
}
