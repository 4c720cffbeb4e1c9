//! What a target receives: the whole event, `Input` (constant JSON), `InputPath`
//! (a JSONPath into the event) or `InputTransformer` (`InputPathsMap` +
//! `InputTemplate`), as EventBridge builds them.
//!
//! The template's quoting rules (the EventBridge guide, "Transforming target
//! input"): in a template that is JSON (it starts with `{` or `[`), a placeholder
//! inside a string literal is replaced by the value's text (a string without its
//! quotes, JSON-escaped; anything else as JSON), and a placeholder outside quotes
//! by the value as JSON (a string with its quotes). In any other template (plain
//! text, or a quoted string) every placeholder is replaced by the value's text. A
//! path that selects nothing is `null` outside quotes and empty inside them. The
//! predefined `<aws.events.rule-arn>`, `<aws.events.rule-name>`,
//! `<aws.events.event.ingestion-time>`, `<aws.events.event>` and
//! `<aws.events.event.json>` need no path.

use serde_json::Value;

/// A JSONPath EventBridge accepts in `InputPath` and `InputPathsMap`: `$`, then
/// `.name`, `['name']` or `[index]` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

impl JsonPath {
    pub fn parse(text: &str) -> Option<JsonPath> {
        let mut rest = text.trim().strip_prefix('$')?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let key = &r[..end];
                if key.is_empty() {
                    return None;
                }
                steps.push(Step::Key(key.to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']')?;
                let inner = r[..end].trim();
                if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|i| i.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|i| i.strip_suffix('"')))
                {
                    steps.push(Step::Key(q.to_string()));
                } else {
                    steps.push(Step::Index(inner.parse().ok()?));
                }
                rest = &r[end + 1..];
            } else {
                return None;
            }
        }
        Some(JsonPath(steps))
    }

    pub fn select<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut cur = v;
        for s in &self.0 {
            cur = match (s, cur) {
                (Step::Key(k), Value::Object(o)) => o.get(k)?,
                (Step::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

/// The context of one delivery, for the predefined variables.
pub struct Context<'a> {
    pub rule_arn: &'a str,
    pub rule_name: &'a str,
    pub ingestion_time: &'a str,
}

/// A value's text: a string without quotes, anything else as JSON.
fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// JSON-escape text to sit inside a string literal.
fn escape(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// Apply `InputPathsMap` + `InputTemplate` to `event`.
pub fn apply_template(
    paths: &serde_json::Map<String, Value>,
    template: &str,
    event: &Value,
    ctx: &Context<'_>,
) -> String {
    let mut values: Vec<(String, Option<Value>)> = Vec::new();
    for (name, path) in paths {
        let v = path
            .as_str()
            .and_then(JsonPath::parse)
            .and_then(|p| p.select(event).cloned());
        values.push((name.clone(), v));
    }
    let predefined = |name: &str| -> Option<Option<Value>> {
        Some(Some(match name {
            "aws.events.rule-arn" => Value::String(ctx.rule_arn.to_string()),
            "aws.events.rule-name" => Value::String(ctx.rule_name.to_string()),
            "aws.events.event.ingestion-time" => Value::String(ctx.ingestion_time.to_string()),
            "aws.events.event" | "aws.events.event.json" => event.clone(),
            _ => return None,
        }))
    };
    let json_mode = matches!(template.trim_start().chars().next(), Some('{') | Some('['));
    let mut out = String::with_capacity(template.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(end) = rest[1..].find('>') {
                let name = &rest[1..1 + end];
                let found = values
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| predefined(name));
                if let Some(v) = found {
                    let text = if !json_mode {
                        text_of(v.as_ref())
                    } else if in_string {
                        escape(&text_of(v.as_ref()))
                    } else {
                        v.map(|v| v.to_string()).unwrap_or_else(|| "null".into())
                    };
                    out.push_str(&text);
                    rest = &rest[end + 2..];
                    escaped = false;
                    continue;
                }
            }
        }
        if json_mode {
            if escaped {
                escaped = false;
            } else if c == '\\' && in_string {
                escaped = true;
            } else if c == '"' {
                in_string = !in_string;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context<'static> {
        Context {
            rule_arn: "arn:aws:events:us-east-1:123456789012:rule/r",
            rule_name: "r",
            ingestion_time: "2024-01-01T00:00:00Z",
        }
    }

    fn event() -> Value {
        json!({"id": "e1", "detail": {"instance-id": "i-123", "state": "running", "n": 5, "obj": {"a": 1}, "list": ["x", "y"], "q": "say \"hi\""}})
    }

    fn map() -> serde_json::Map<String, Value> {
        json!({"instance": "$.detail.instance-id", "state": "$.detail.state", "n": "$.detail.n", "obj": "$.detail.obj", "first": "$.detail.list[0]", "q": "$.detail.q", "none": "$.detail.nothing"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn json_paths() {
        let ev = event();
        for (p, want) in [
            ("$", Some(ev.clone())),
            ("$.detail.state", Some(json!("running"))),
            ("$.detail['instance-id']", Some(json!("i-123"))),
            ("$.detail.list[1]", Some(json!("y"))),
            ("$.detail.nothing", None),
        ] {
            assert_eq!(
                JsonPath::parse(p).unwrap().select(&ev).cloned(),
                want,
                "{p}"
            );
        }
        assert!(JsonPath::parse("detail").is_none());
        assert!(JsonPath::parse("$..x").is_none());
    }

    #[test]
    fn templates_follow_the_guides_quoting_rules() {
        let ev = event();
        let t = |tpl: &str| apply_template(&map(), tpl, &ev, &ctx());
        // The guide's examples.
        assert_eq!(
            t(r#"{"instance" : <instance>, "state": [9, <state>, true]}"#),
            r#"{"instance" : "i-123", "state": [9, "running", true]}"#
        );
        assert_eq!(
            t(r#""<instance> is in state <state>""#),
            r#""i-123 is in state running""#
        );
        assert_eq!(
            t("instance <instance> is in <state>"),
            "instance i-123 is in running"
        );
        assert_eq!(
            t(r#"{"text": "instance <instance> has n=<n>"}"#),
            r#"{"text": "instance i-123 has n=5"}"#
        );
        assert_eq!(
            t(r#"{"o": <obj>, "n": <n>, "none": <none>, "s": "<none>"}"#),
            r#"{"o": {"a":1}, "n": 5, "none": null, "s": ""}"#
        );
        // Quotes in a value are escaped inside a string literal.
        assert_eq!(t(r#"{"q": "<q>"}"#), r#"{"q": "say \"hi\""}"#);
        assert_eq!(t(r#"{"first": <first>}"#), r#"{"first": "x"}"#);
        // Predefined variables; an unknown placeholder stays as written.
        assert_eq!(
            t(
                r#"{"rule": "<aws.events.rule-name>", "e": <aws.events.event.json>, "u": "<unknown>"}"#
            ),
            format!(r#"{{"rule": "r", "e": {ev}, "u": "<unknown>"}}"#)
        );
    }
}
