//! EventBridge event patterns (content filtering): exact values, prefix, suffix, anything-but,
//! exists, numeric, equals-ignore-case and wildcard, nested to any depth, as EventBridge matches them.

use serde_json::Value;

/// Whether `event` matches `pattern`. A pattern that is not an object matches nothing.
pub fn matches(pattern: &Value, event: &Value) -> bool {
    let Value::Object(fields) = pattern else { return false };
    fields.iter().all(|(key, want)| {
        let field = event.get(key);
        match want {
            Value::Object(_) => field.is_some_and(|f| matches(want, f)),
            Value::Array(alternatives) => field_matches(alternatives, field),
            _ => false,
        }
    })
}

/// A leaf: the field (absent, a value, or an array of values) against the pattern's list.
fn field_matches(alternatives: &[Value], field: Option<&Value>) -> bool {
    let values: Vec<&Value> = match field {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
    };
    alternatives.iter().any(|alt| match alt {
        Value::Object(filter) if filter.contains_key("exists") => {
            let want = filter["exists"].as_bool().unwrap_or(true);
            want != values.is_empty()
        }
        _ => values.iter().any(|v| value_matches(alt, v)),
    })
}

fn value_matches(alt: &Value, v: &Value) -> bool {
    let Value::Object(filter) = alt else { return alt == v };
    let Some((op, arg)) = filter.iter().next() else {
        return false;
    };
    let s = v.as_str();
    match op.as_str() {
        "prefix" => prefix_or_suffix(arg, s, |s, p| s.starts_with(p)),
        "suffix" => prefix_or_suffix(arg, s, |s, p| s.ends_with(p)),
        "equals-ignore-case" => arg.as_str().zip(s).is_some_and(|(a, s)| a.eq_ignore_ascii_case(s)),
        "wildcard" => arg.as_str().zip(s).is_some_and(|(p, s)| wildcard(p, s)),
        "anything-but" => match arg {
            Value::Array(list) => !list.iter().any(|x| x == v),
            Value::Object(_) => !value_matches(arg, v),
            other => other != v,
        },
        "numeric" => v.as_f64().is_some_and(|n| numeric(arg, n)),
        _ => false,
    }
}

fn prefix_or_suffix(arg: &Value, s: Option<&str>, test: fn(&str, &str) -> bool) -> bool {
    match (arg, s) {
        (Value::String(p), Some(s)) => test(s, p),
        // {"prefix": {"equals-ignore-case": "x"}}
        (Value::Object(o), Some(s)) => o
            .get("equals-ignore-case")
            .and_then(Value::as_str)
            .is_some_and(|p| test(&s.to_ascii_lowercase(), &p.to_ascii_lowercase())),
        _ => false,
    }
}

/// `[">", 0, "<=", 5]`: every comparison must hold.
fn numeric(arg: &Value, n: f64) -> bool {
    let Value::Array(terms) = arg else { return false };
    terms.chunks(2).all(|pair| {
        match (
            pair.first().and_then(Value::as_str),
            pair.get(1).and_then(Value::as_f64),
        ) {
            (Some("="), Some(x)) => n == x,
            (Some("<"), Some(x)) => n < x,
            (Some("<="), Some(x)) => n <= x,
            (Some(">"), Some(x)) => n > x,
            (Some(">="), Some(x)) => n >= x,
            _ => false,
        }
    })
}

fn wildcard(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(mut tail) = s.strip_prefix(head) else {
                return false;
            };
            let mut parts: Vec<&str> = rest.split('*').collect();
            let last = parts.pop().unwrap_or_default();
            for part in parts {
                match tail.find(part) {
                    Some(i) => tail = &tail[i + part.len()..],
                    None => return false,
                }
            }
            tail.ends_with(last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ami_event(state: &str) -> Value {
        json!({"source": "aws.ec2", "detail-type": "EC2 AMI State Change", "resources": ["arn:a", "arn:b"],
               "detail": {"State": state, "ImageId": "ami-0abcdef1234567890", "size": 8}})
    }

    #[test]
    fn exact_nested_and_arrays() {
        let p = json!({"source": ["aws.ec2"], "detail": {"State": ["available", "failed"]}});
        assert!(matches(&p, &ami_event("available")));
        assert!(matches(&p, &ami_event("failed")));
        assert!(!matches(&p, &ami_event("deregistered")));
        assert!(
            matches(&json!({"resources": ["arn:b"]}), &ami_event("x")),
            "any element of an array field"
        );
        assert!(!matches(
            &json!({"detail": {"Missing": ["x"]}}),
            &ami_event("available")
        ));
        assert!(
            !matches(&json!({"detail": ["available"]}), &ami_event("available")),
            "object field vs leaf list"
        );
    }

    #[test]
    fn content_filters() {
        let e = ami_event("available");
        assert!(matches(&json!({"detail": {"ImageId": [{"prefix": "ami-"}]}}), &e));
        assert!(!matches(&json!({"detail": {"ImageId": [{"prefix": "snap-"}]}}), &e));
        assert!(matches(&json!({"detail": {"ImageId": [{"suffix": "890"}]}}), &e));
        assert!(matches(
            &json!({"detail": {"State": [{"anything-but": ["failed", "deregistered"]}]}}),
            &e
        ));
        assert!(!matches(
            &json!({"detail": {"State": [{"anything-but": "available"}]}}),
            &e
        ));
        assert!(matches(
            &json!({"detail": {"State": [{"anything-but": {"prefix": "fail"}}]}}),
            &e
        ));
        assert!(matches(&json!({"detail": {"ErrorMessage": [{"exists": false}]}}), &e));
        assert!(!matches(&json!({"detail": {"State": [{"exists": false}]}}), &e));
        assert!(matches(&json!({"detail": {"State": [{"exists": true}]}}), &e));
        assert!(matches(
            &json!({"detail": {"size": [{"numeric": [">", 4, "<=", 8]}]}}),
            &e
        ));
        assert!(!matches(&json!({"detail": {"size": [{"numeric": ["<", 8]}]}}), &e));
        assert!(matches(
            &json!({"detail-type": [{"equals-ignore-case": "ec2 ami state change"}]}),
            &e
        ));
        assert!(matches(&json!({"detail-type": [{"wildcard": "EC2*State*"}]}), &e));
        assert!(!matches(&json!({"detail-type": [{"wildcard": "EC2*Instance*"}]}), &e));
    }
}
