//! Physical names: the resource's own name property when the template gives one,
//! else CloudFormation's rule — `<stack>-<logicalId>-<SUFFIX>`, the stack name and
//! logical id shortened so the whole fits the service's limit, the suffix 12
//! random upper-case letters and digits (lower-case for S3 buckets). The engine
//! stores the name it generated, so a redeploy keeps it.

/// The name property and the limit of each type whose name the engine generates.
pub struct NameRule {
    /// The property that names the resource (`QueueName`, `TableName`, …).
    pub property: &'static str,
    pub max_len: usize,
    /// S3 bucket names are lower case.
    pub lower: bool,
}

pub fn rule(kind: &str) -> Option<NameRule> {
    let (property, max_len, lower) = match kind {
        "AWS::SQS::Queue" => ("QueueName", 80, false),
        "AWS::SNS::Topic" => ("TopicName", 256, false),
        "AWS::S3::Bucket" => ("BucketName", 63, true),
        "AWS::DynamoDB::Table" => ("TableName", 255, false),
        "AWS::Serverless::SimpleTable" => ("TableName", 255, false),
        "AWS::Kinesis::Stream" => ("Name", 128, false),
        "AWS::Events::EventBus" => ("Name", 256, false),
        "AWS::Events::Rule" => ("Name", 64, false),
        "AWS::SecretsManager::Secret" => ("Name", 512, false),
        "AWS::SSM::Parameter" => ("Name", 2048, false),
        "AWS::IAM::Role" => ("RoleName", 64, false),
        "AWS::IAM::ManagedPolicy" => ("ManagedPolicyName", 128, false),
        _ => return None,
    };
    Some(NameRule {
        property,
        max_len,
        lower,
    })
}

/// 12 random characters from A–Z and 0–9.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// `<stack>-<logical>-<suffix><tail>` within `rule.max_len` (`tail` is `.fifo`
/// for a FIFO queue, which must end with it).
pub fn generate(stack: &str, logical: &str, suffix: &str, tail: &str, rule: &NameRule) -> String {
    let budget = rule.max_len.saturating_sub(suffix.len() + tail.len() + 2);
    let (mut s, mut l) = (stack.to_string(), logical.to_string());
    // Shorten the longer part first, as CloudFormation does.
    while s.len() + l.len() > budget {
        if s.len() >= l.len() {
            s.pop();
        } else {
            l.pop();
        }
    }
    let mut name = format!("{s}-{l}-{suffix}{tail}");
    if rule.lower {
        name = name.to_ascii_lowercase();
        // Bucket names allow lower-case letters, digits, dots and hyphens.
        name = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_cloudformation() {
        let q = rule("AWS::SQS::Queue").unwrap();
        let b = rule("AWS::S3::Bucket").unwrap();
        let long = "x".repeat(100);
        let cases: Vec<(&str, &str, &str, &NameRule, &str)> = vec![
            ("shop-dev", "Orders", "", &q, "shop-dev-Orders-ABCDEFGHIJKL"),
            (
                "shop-dev",
                "Orders",
                ".fifo",
                &q,
                "shop-dev-Orders-ABCDEFGHIJKL.fifo",
            ),
            (
                "Shop_Dev",
                "Uploads",
                "",
                &b,
                "shop-dev-uploads-abcdefghijkl",
            ),
        ];
        for (stack, logical, tail, r, want) in cases {
            assert_eq!(generate(stack, logical, "ABCDEFGHIJKL", tail, r), want);
        }
        let n = generate(&long, &long, "ABCDEFGHIJKL", ".fifo", &q);
        assert_eq!(n.len(), 80);
        assert!(n.ends_with("-ABCDEFGHIJKL.fifo"));
        let n = generate(&long, "Uploads", "abcdefghijkl", "", &b);
        assert_eq!(n.len(), 63);
        assert!(n.contains("-uploads-"), "{n}");
        let s = random_suffix();
        assert_eq!(s.len(), 12);
        assert!(s
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_ne!(s, random_suffix());
    }
}
