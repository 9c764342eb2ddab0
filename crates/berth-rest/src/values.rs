//! Reading JSON values the way the reference's Django code coerces them. A value the
//! reference would crash on (500) is `None` here, and the handler answers the recommended
//! 4xx instead.

use serde_json::Value;

/// Python `int()` of a JSON value: integers, and strings holding one.
pub fn int_like(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// A number in a URL path: the reference's routes match `[0-9]+` only, so anything else
/// (a sign, a space, too many digits for an id) is the router's 404, never a lookup.
pub fn path_number(segment: &str) -> Option<i64> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// Django `BooleanField` coercion: `true/false`, `1/0`, `"True"/"False"`, `"t"/"f"`,
/// `"1"/"0"`.
pub fn bool_like(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "True" | "t" | "1" | "true" => Some(true),
            "False" | "f" | "0" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// What the reference stores for a JSON value in a text column (`str(value)`): strings as
/// they are, numbers and booleans as text, `null` as NULL; `None` for lists and objects.
pub fn text_like(value: &Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        Value::Number(n) => Some(Some(n.to_string())),
        Value::Bool(b) => Some(Some(if *b { "True" } else { "False" }.to_owned())),
        _ => None,
    }
}

/// A list of strings (tags, ssh keys); anything else is refused (Q8 fixed).
pub fn string_list(value: &Value) -> Option<Vec<String>> {
    value.as_array()?.iter().map(|v| v.as_str().map(str::to_owned)).collect()
}

/// `?tags=a,b` → names, as the reference splits them: empty names stay (no tag has one),
/// so `?tags=` filters everything out rather than filtering nothing.
pub fn tag_names(query: Option<&str>) -> Vec<String> {
    query.map(|q| q.split(',').map(str::to_owned).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coercions() {
        assert_eq!(int_like(&json!("42")), Some(42));
        assert_eq!(int_like(&json!("x")), None);
        assert_eq!(bool_like(&json!("t")), Some(true));
        assert_eq!(bool_like(&json!(2)), None);
        assert_eq!(text_like(&json!(123)), Some(Some("123".into())));
        assert_eq!(string_list(&json!("abc")), None);
        assert_eq!(tag_names(Some("a,,b")), vec!["a", "", "b"]);
        assert_eq!(tag_names(Some("")), vec![""]);
        assert!(tag_names(None).is_empty());
    }
}
