//! A YAML document as a tree of nodes that remember where they came from (line and
//! column) and their local tag (`!Ref`, `!Sub`, …), built from `yaml-rust2`'s event
//! parser. serde-based YAML crates drop both: positions exist only on their errors,
//! and CloudFormation's short-form tags are rejected or lost.
//!
//! Plain scalars are typed with YAML 1.2's core schema (`null`, `true`, `12`, `1.5`);
//! quoted scalars are always strings. Anchors and aliases are expanded, and the merge
//! key `<<` (common in `serverless.yml`) is honoured.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; keys are nodes so that they keep their line.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    /// A local tag without its `!`: `Ref` for `!Ref x`. Standard `!!` tags are
    /// applied while parsing and not kept.
    pub tag: Option<String>,
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    pub fn new(value: Value, pos: Pos) -> Self {
        Node {
            value,
            pos,
            tag: None,
        }
    }

    pub fn str(s: impl Into<String>, pos: Pos) -> Self {
        Node::new(Value::Str(s.into()), pos)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key node of `key` in a mapping (for its line).
    pub fn key_node(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    /// Follow a dotted path (`provider.stage`) through mappings; a numeric segment
    /// indexes a sequence.
    pub fn path(&self, path: &str) -> Option<&Node> {
        let mut cur = self;
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            cur = match &cur.value {
                Value::Map(_) => cur.get(seg)?,
                Value::Seq(items) => items.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// A scalar as text (`12` → "12"); `None` for collections and null.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// What the node is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The node as JSON (tags dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parse the first document of `text`. An empty file is a null node.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
    };
    loop {
        let (ev, m) = b.next()?;
        match ev {
            Event::StreamStart | Event::DocumentStart | Event::Nothing => continue,
            Event::StreamEnd | Event::DocumentEnd => {
                return Ok(Node::new(Value::Null, Pos { line: 1, col: 1 }))
            }
            ev => return b.node(ev, m),
        }
    }
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    anchors: HashMap<usize, Node>,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Marker), SyntaxError> {
        self.parser.next_token().map_err(|e| SyntaxError {
            pos: (*e.marker()).into(),
            message: e.info().to_string(),
        })
    }

    fn node(&mut self, ev: Event, m: Marker) -> Result<Node, SyntaxError> {
        let pos = Pos::from(m);
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                (scalar(text, style, tag.as_ref(), pos)?, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                let mut items = Vec::new();
                loop {
                    let (ev, m) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, m)?);
                }
                let mut n = Node::new(Value::Seq(items), pos);
                n.tag = local_tag(tag.as_ref());
                (n, anchor)
            }
            Event::MappingStart(anchor, tag) => {
                let mut entries: Vec<(Node, Node)> = Vec::new();
                let mut merged: Vec<(Node, Node)> = Vec::new();
                loop {
                    let (ev, m) = self.next()?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let k = self.node(ev, m)?;
                    let (ev, m) = self.next()?;
                    let v = self.node(ev, m)?;
                    if k.as_str() == Some("<<") && k.tag.is_none() {
                        let sources = match &v.value {
                            Value::Seq(items) => items.clone(),
                            _ => vec![v],
                        };
                        for s in sources {
                            match s.value {
                                Value::Map(m) => merged.extend(m),
                                _ => {
                                    return Err(SyntaxError {
                                        pos: s.pos,
                                        message: "the merge key << needs a mapping".into(),
                                    })
                                }
                            }
                        }
                        continue;
                    }
                    if let Some((prev, _)) = entries
                        .iter()
                        .find(|(p, _)| p.scalar_text().is_some() && p.value == k.value)
                    {
                        return Err(SyntaxError {
                            pos: k.pos,
                            message: format!(
                                "duplicate key {:?} (first at line {})",
                                k.scalar_text().unwrap_or_default(),
                                prev.pos.line
                            ),
                        });
                    }
                    entries.push((k, v));
                }
                // Keys written in the mapping win over merged ones.
                for (k, v) in merged {
                    if !entries.iter().any(|(e, _)| e.value == k.value) {
                        entries.push((k, v));
                    }
                }
                let mut n = Node::new(Value::Map(entries), pos);
                n.tag = local_tag(tag.as_ref());
                (n, anchor)
            }
            Event::Alias(id) => {
                let mut n = self.anchors.get(&id).cloned().ok_or(SyntaxError {
                    pos,
                    message: "alias to an unknown anchor".into(),
                })?;
                n.pos = pos;
                return Ok(n);
            }
            other => {
                return Err(SyntaxError {
                    pos,
                    message: format!("unexpected YAML event {other:?}"),
                })
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

fn local_tag(tag: Option<&Tag>) -> Option<String> {
    match tag {
        Some(t) if t.handle == "!" => Some(t.suffix.clone()),
        _ => None,
    }
}

fn scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    pos: Pos,
) -> Result<Node, SyntaxError> {
    if let Some(t) = tag {
        if t.handle == "!!" || t.handle == "tag:yaml.org,2002:" {
            let value = match t.suffix.as_str() {
                "str" => Value::Str(text),
                "int" => Value::Int(text.parse().map_err(|_| SyntaxError {
                    pos,
                    message: format!("{text:?} is not an integer"),
                })?),
                "float" => Value::Float(text.parse().map_err(|_| SyntaxError {
                    pos,
                    message: format!("{text:?} is not a number"),
                })?),
                "bool" => plain(&text),
                "null" => Value::Null,
                _ => Value::Str(text),
            };
            return Ok(Node::new(value, pos));
        }
    }
    let value = if style == TScalarStyle::Plain {
        plain(&text)
    } else {
        Value::Str(text)
    };
    let mut n = Node::new(value, pos);
    n.tag = local_tag(tag);
    Ok(n)
}

/// YAML 1.2 core schema for plain scalars.
fn plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | "+.inf" | ".Inf" | "+.Inf" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(h) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(h, 16) {
            return Value::Int(i);
        }
    }
    if let Some(o) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(o, 8) {
            return Value::Int(i);
        }
    }
    let numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if numeric {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_tags_and_types() {
        let doc = parse(
            "a: 1\nb:\n  c: 'x'\n  d: !Ref Thing\n  e: !Sub\n    - '${X}'\n    - {X: 1}\nf: [true, null, 1.5, ~, yes]\n",
        )
        .unwrap();
        assert_eq!(doc.get("a").unwrap().value, Value::Int(1));
        assert_eq!(doc.get("a").unwrap().pos, Pos { line: 1, col: 4 });
        let b = doc.get("b").unwrap();
        assert_eq!(b.get("c").unwrap().pos.line, 3);
        let d = b.get("d").unwrap();
        assert_eq!(d.tag.as_deref(), Some("Ref"));
        assert_eq!(d.as_str(), Some("Thing"));
        assert_eq!(d.pos.line, 4);
        let e = b.get("e").unwrap();
        assert_eq!(e.tag.as_deref(), Some("Sub"));
        assert_eq!(e.as_seq().unwrap().len(), 2);
        assert_eq!(b.key_node("e").unwrap().pos.line, 5);
        let f: Vec<_> = doc
            .get("f")
            .unwrap()
            .as_seq()
            .unwrap()
            .iter()
            .map(|n| n.value.clone())
            .collect();
        assert_eq!(
            f,
            vec![
                Value::Bool(true),
                Value::Null,
                Value::Float(1.5),
                Value::Null,
                Value::Str("yes".into())
            ]
        );
    }

    #[test]
    fn anchors_merge_and_duplicates() {
        let doc = parse("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nq: \"1\"\nr: !!str 12\n")
            .unwrap();
        let o = doc.get("other").unwrap();
        assert_eq!(o.get("x").unwrap().value, Value::Int(1));
        assert_eq!(o.get("y").unwrap().value, Value::Int(3));
        assert_eq!(doc.get("q").unwrap().value, Value::Str("1".into()));
        assert_eq!(doc.get("r").unwrap().value, Value::Str("12".into()));
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos.line, 3);
        assert!(e.message.contains("duplicate key \"a\" (first at line 1)"));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.pos.line >= 2, "{e:?}");
        let e = parse("a:\n  b: 1\n c: 2\n").unwrap_err();
        assert_eq!(e.pos.line, 3, "{e:?}");
    }
}
