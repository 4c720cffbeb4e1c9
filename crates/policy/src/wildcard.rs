//! `*` / `?` wildcard matching, and ARN matching segment by segment.

/// Does `text` match `pattern` (`*` any run, `?` one character)?
/// `case_sensitive: false` compares ASCII case-insensitively (actions).
pub fn glob(pattern: &str, text: &str, case_sensitive: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let eq = |a: char, b: char| {
        if case_sensitive {
            a == b
        } else {
            a.to_lowercase().eq(b.to_lowercase())
        }
    };
    // Iterative matching with backtracking to the last `*`.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// ARN matching as `Resource` and the `Arn*` operators do it: the six
/// `:`-separated parts (`arn:partition:service:region:account:resource`)
/// are matched one by one, so a wildcard does not cross into the next part,
/// except in the resource part, which takes the rest of the ARN. `*` alone
/// matches everything.
pub fn arn_like(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    if p.len() != 6 || a.len() != 6 {
        // Not both ARNs: only two non-ARNs compare (as plain wildcards).
        return p.len() != 6 && a.len() != 6 && glob(pattern, arn, true);
    }
    p.iter().zip(a.iter()).all(|(p, a)| glob(p, a, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(glob("s3:Get*", "s3:GetObject", true));
        assert!(glob("s3:get*", "S3:GetObject", false));
        assert!(!glob("s3:get*", "S3:GetObject", true));
        assert!(glob("a?c", "abc", true));
        assert!(!glob("a?c", "ac", true));
        assert!(glob("*", "", true));
        assert!(glob("a*b*c", "axxbyyc", true));
        assert!(!glob("a*b*c", "axxbyy", true));
        assert!(glob("*/*", "bucket/key/deeper", true));
    }

    #[test]
    fn arns_match_per_part() {
        assert!(arn_like(
            "arn:aws:s3:::bucket/*",
            "arn:aws:s3:::bucket/a/b.txt"
        ));
        assert!(!arn_like("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket2/a"));
        assert!(arn_like(
            "arn:aws:dynamodb:*:*:table/Orders",
            "arn:aws:dynamodb:us-east-1:123456789012:table/Orders"
        ));
        assert!(!arn_like(
            "arn:aws:dynamodb:*:*:table/Orders",
            "arn:aws:dynamodb:us-east-1:123456789012:table/Orders2"
        ));
        // A wildcard in the region does not swallow the account.
        assert!(!arn_like(
            "arn:aws:sqs:us-*:queue",
            "arn:aws:sqs:us-east-1:123456789012:queue"
        ));
        assert!(arn_like(
            "arn:aws:lambda:*:*:function:f:*",
            "arn:aws:lambda:us-east-1:1:function:f:prod"
        ));
    }
}
