//! Policy documents: the JSON grammar, parsed into [`Policy`] and validated
//! with the `MalformedPolicyDocument` messages IAM answers.

use serde_json::{Map, Value};

/// Why a policy document was refused (IAM's `MalformedPolicyDocument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

fn bad(m: impl Into<String>) -> Malformed {
    Malformed(m.into())
}

/// What kind of policy a document is: it decides whether `Principal` is
/// required, allowed or prohibited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Attached to a user or role (inline or managed), or a session policy:
    /// no `Principal`.
    Identity,
    /// Attached to a resource (bucket, queue, topic, function, secret) or a
    /// role's trust policy: `Principal` or `NotPrincipal` required.
    Resource,
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A list of patterns, or its negation (`NotAction`, `NotResource`, `NotPrincipal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match<T> {
    Any(Vec<T>),
    Not(Vec<T>),
}

/// A `Principal` element's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalEntry {
    /// `"*"` or `{"AWS": "*"}`: everyone.
    Everyone,
    /// An `AWS` entry: an account id, an account root, user or role ARN, an
    /// assumed-role session ARN.
    Aws(String),
    /// A `Service` entry, e.g. `lambda.amazonaws.com`.
    Service(String),
    /// A `Federated` entry (an OIDC provider, `cognito-identity.amazonaws.com`).
    Federated(String),
    /// A `CanonicalUser` entry (S3).
    CanonicalUser(String),
}

/// One condition test: `"StringEquals": {"aws:username": ["a", "b"]}` is one
/// [`Condition`] per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The operator as written, e.g. `ForAnyValue:StringLikeIfExists`.
    pub operator: String,
    pub op: crate::condition::Operator,
    /// The context key as written (compared case-insensitively).
    pub key: String,
    pub values: Vec<String>,
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    /// The statement's position in the document (0-based).
    pub index: usize,
    pub effect: Effect,
    pub principal: Option<Match<PrincipalEntry>>,
    pub action: Match<String>,
    /// `None` in trust policies, which name no resource.
    pub resource: Option<Match<String>>,
    pub conditions: Vec<Condition>,
}

impl Statement {
    /// `Sid` if the statement has one, else `Statement[<index>]`.
    pub fn label(&self) -> String {
        match &self.sid {
            Some(s) if !s.is_empty() => s.clone(),
            _ => format!("Statement[{}]", self.index),
        }
    }
}

/// A parsed, validated policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub version: String,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

/// The two grammar versions; `2008-10-17` knows no policy variables.
pub const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];

impl Policy {
    /// Parse an identity policy (no `Principal`).
    pub fn identity(text: &str) -> Result<Policy, Malformed> {
        Self::parse(text, Kind::Identity)
    }

    /// Parse a resource policy or trust policy (`Principal` required).
    pub fn resource(text: &str) -> Result<Policy, Malformed> {
        Self::parse(text, Kind::Resource)
    }

    /// Parse and validate `text` as a policy of `kind`.
    pub fn parse(text: &str, kind: Kind) -> Result<Policy, Malformed> {
        let v: Value = serde_json::from_str(text).map_err(|_| bad("Syntax errors in policy."))?;
        let Value::Object(top) = v else {
            return Err(bad("Syntax errors in policy."));
        };
        let mut version = None;
        let mut id = None;
        let mut statements = None;
        for (k, v) in &top {
            match k.as_str() {
                "Version" => version = Some(v),
                "Id" => id = Some(v),
                "Statement" => statements = Some(v),
                _ => return Err(bad("Syntax errors in policy.")),
            }
        }
        let version = match version {
            None => "2008-10-17".to_owned(),
            Some(Value::String(s)) if VERSIONS.contains(&s.as_str()) => s.clone(),
            Some(_) => return Err(bad("The policy failed legacy parsing")),
        };
        let id = match id {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("Syntax errors in policy.")),
        };
        let list: Vec<&Value> = match statements {
            None => return Err(bad("Syntax errors in policy.")),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(o @ Value::Object(_)) => vec![o],
            Some(_) => return Err(bad("Syntax errors in policy.")),
        };
        if list.is_empty() {
            return Err(bad("Syntax errors in policy."));
        }
        let mut out = Vec::with_capacity(list.len());
        let mut sids = std::collections::HashSet::new();
        for (index, s) in list.into_iter().enumerate() {
            let Value::Object(s) = s else {
                return Err(bad("Syntax errors in policy."));
            };
            let st = statement(s, index, kind)?;
            if let Some(sid) = &st.sid {
                if !sid.is_empty() && !sids.insert(sid.clone()) {
                    return Err(bad(
                        "Statement IDs (SID) in a single policy must be unique.",
                    ));
                }
            }
            out.push(st);
        }
        Ok(Policy {
            version,
            id,
            statements: out,
        })
    }
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, Malformed> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad("Syntax errors in policy.")),
            })
            .collect(),
        Value::Array(_) => Err(bad(format!("Required field {field} cannot be empty"))),
        _ => Err(bad("Syntax errors in policy.")),
    }
}

fn statement(s: &Map<String, Value>, index: usize, kind: Kind) -> Result<Statement, Malformed> {
    const FIELDS: [&str; 9] = [
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    ];
    if let Some(k) = s.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!("Statement has unknown field {k}")).or_syntax());
    }
    let sid = match s.get("Sid") {
        None => None,
        Some(Value::String(x)) => {
            if !x.bytes().all(|b| b.is_ascii_alphanumeric()) && kind == Kind::Identity {
                return Err(bad("Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*"));
            }
            Some(x.clone())
        }
        Some(_) => return Err(bad("Syntax errors in policy.")),
    };
    let effect = match s.get("Effect") {
        None => return Err(bad("Missing required field Effect")),
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(Value::String(e)) => return Err(bad(format!("Invalid effect: {e}"))),
        Some(_) => return Err(bad("Syntax errors in policy.")),
    };
    let principal = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(_), Some(_)) => return Err(bad("Syntax errors in policy.")),
        (Some(_), None) | (None, Some(_)) if kind == Kind::Identity => {
            let f = if s.contains_key("Principal") {
                "Principal"
            } else {
                "NotPrincipal"
            };
            return Err(bad(format!("Has prohibited field {f}")));
        }
        (Some(p), None) => Some(Match::Any(principal(p)?)),
        (None, Some(p)) => Some(Match::Not(principal(p)?)),
        (None, None) if kind == Kind::Resource => {
            return Err(bad("Missing required field Principal"))
        }
        (None, None) => None,
    };
    let action = match (s.get("Action"), s.get("NotAction")) {
        (Some(_), Some(_)) => return Err(bad("Syntax errors in policy.")),
        (Some(a), None) => Match::Any(actions(a, "Action")?),
        (None, Some(a)) => Match::Not(actions(a, "NotAction")?),
        (None, None) => return Err(bad("Policy statement must contain actions.")),
    };
    let resource = match (s.get("Resource"), s.get("NotResource")) {
        (Some(_), Some(_)) => return Err(bad("Syntax errors in policy.")),
        (Some(r), None) => Some(Match::Any(resources(r, "Resource")?)),
        (None, Some(r)) => Some(Match::Not(resources(r, "NotResource")?)),
        (None, None) if kind == Kind::Identity => {
            return Err(bad("Policy statement must contain resources."))
        }
        (None, None) => None,
    };
    let conditions = match s.get("Condition") {
        None => vec![],
        Some(Value::Object(c)) => conditions(c)?,
        Some(_) => return Err(bad("Syntax errors in policy.")),
    };
    Ok(Statement {
        sid,
        index,
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}

trait OrSyntax {
    fn or_syntax(self) -> Self;
}

impl OrSyntax for Malformed {
    /// IAM answers unknown statement fields with its generic message.
    fn or_syntax(self) -> Self {
        bad("Syntax errors in policy.")
    }
}

fn actions(v: &Value, field: &str) -> Result<Vec<String>, Malformed> {
    let list = strings(v, field)?;
    for a in &list {
        if a == "*" {
            continue;
        }
        let Some((vendor, name)) = a.split_once(':') else {
            return Err(bad(
                "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
            ));
        };
        if vendor.is_empty()
            || name.is_empty()
            || !vendor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad(format!("Vendor {vendor} is not valid")));
        }
        if name.contains(':') {
            return Err(bad(format!("Action {a} is not valid")));
        }
    }
    Ok(list)
}

fn resources(v: &Value, field: &str) -> Result<Vec<String>, Malformed> {
    let list = strings(v, field)?;
    for r in &list {
        if r == "*" {
            continue;
        }
        let parts: Vec<&str> = r.splitn(6, ':').collect();
        if parts.len() < 6 || parts[0] != "arn" {
            return Err(bad(format!("Resource {r} must be in ARN format or \"*\".")));
        }
    }
    Ok(list)
}

fn principal(v: &Value) -> Result<Vec<PrincipalEntry>, Malformed> {
    match v {
        Value::String(s) if s == "*" => Ok(vec![PrincipalEntry::Everyone]),
        Value::Object(m) if !m.is_empty() => {
            let mut out = vec![];
            for (k, v) in m {
                let vals = strings(v, "Principal")?;
                for x in vals {
                    out.push(match k.as_str() {
                        "AWS" if x == "*" => PrincipalEntry::Everyone,
                        "AWS" => {
                            let account_id = x.len() == 12 && x.bytes().all(|b| b.is_ascii_digit());
                            if !account_id && !x.starts_with("arn:") {
                                return Err(bad(format!(
                                    "Invalid principal in policy: \"AWS\":\"{x}\""
                                )));
                            }
                            PrincipalEntry::Aws(x)
                        }
                        "Service" => PrincipalEntry::Service(x),
                        "Federated" => PrincipalEntry::Federated(x),
                        "CanonicalUser" => PrincipalEntry::CanonicalUser(x),
                        _ => return Err(bad(format!("Invalid principal in policy: \"{k}\""))),
                    });
                }
            }
            Ok(out)
        }
        _ => Err(bad("Syntax errors in policy.")),
    }
}

fn conditions(c: &Map<String, Value>) -> Result<Vec<Condition>, Malformed> {
    let mut out = vec![];
    for (operator, block) in c {
        let op = crate::condition::Operator::parse(operator)
            .ok_or_else(|| bad(format!("Invalid Condition type : {operator}")))?;
        let Value::Object(block) = block else {
            return Err(bad("Syntax errors in policy."));
        };
        for (key, vals) in block {
            if !key.contains(':') {
                return Err(bad(
                    "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
                ));
            }
            let values = match vals {
                Value::String(s) => vec![s.clone()],
                Value::Bool(b) => vec![b.to_string()],
                Value::Number(n) => vec![n.to_string()],
                Value::Array(a) => a
                    .iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(s.clone()),
                        Value::Bool(b) => Ok(b.to_string()),
                        Value::Number(n) => Ok(n.to_string()),
                        _ => Err(bad("Syntax errors in policy.")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(bad("Syntax errors in policy.")),
            };
            out.push(Condition {
                operator: operator.clone(),
                op,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

/// The size IAM counts a policy document as: its characters without
/// whitespace outside string values.
pub fn counted_size(text: &str) -> usize {
    let mut n = 0;
    let mut in_str = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_str {
            n += 1;
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if !c.is_whitespace() {
            n += 1;
            if c == '"' {
                in_str = true;
            }
        }
    }
    n
}
