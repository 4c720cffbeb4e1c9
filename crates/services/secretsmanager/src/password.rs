//! `GetRandomPassword`: AWS's character classes and options.

use http::StatusCode;
use nimbus_protocol::AwsError;

/// AWS's punctuation set.
pub const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// The options of `GetRandomPassword`.
#[derive(Debug, Clone)]
pub struct PasswordSpec {
    pub length: i64,
    pub exclude_characters: String,
    pub exclude_numbers: bool,
    pub exclude_punctuation: bool,
    pub exclude_uppercase: bool,
    pub exclude_lowercase: bool,
    pub include_space: bool,
    pub require_each_included_type: bool,
}

impl Default for PasswordSpec {
    fn default() -> Self {
        Self {
            length: 32,
            exclude_characters: String::new(),
            exclude_numbers: false,
            exclude_punctuation: false,
            exclude_uppercase: false,
            exclude_lowercase: false,
            include_space: false,
            require_each_included_type: true,
        }
    }
}

fn invalid(msg: &str) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "InvalidParameterException", msg)
}

fn uniform(n: usize) -> Result<usize, AwsError> {
    // Rejection sampling over u32 for an unbiased index.
    let zone = u32::MAX - (u32::MAX % n as u32);
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|_| {
            AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServiceError",
                "The random source failed.",
            )
        })?;
        let v = u32::from_le_bytes(b);
        if v < zone {
            return Ok((v % n as u32) as usize);
        }
    }
}

/// A password per `spec`, from the OS random source.
pub fn generate(spec: &PasswordSpec) -> Result<String, AwsError> {
    if !(1..=4096).contains(&spec.length) {
        return Err(invalid("PasswordLength must be between 1 and 4096."));
    }
    let keep = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| !spec.exclude_characters.contains(*c))
            .collect()
    };
    let mut classes: Vec<Vec<char>> = Vec::new();
    if !spec.exclude_lowercase {
        classes.push(keep("abcdefghijklmnopqrstuvwxyz"));
    }
    if !spec.exclude_uppercase {
        classes.push(keep("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
    }
    if !spec.exclude_numbers {
        classes.push(keep("0123456789"));
    }
    if !spec.exclude_punctuation {
        classes.push(keep(PUNCTUATION));
    }
    if spec.include_space {
        classes.push(keep(" "));
    }
    classes.retain(|c| !c.is_empty());
    let all: Vec<char> = classes.iter().flatten().copied().collect();
    if all.is_empty() {
        return Err(invalid(
            "The password can't be generated because every character type is excluded.",
        ));
    }
    let len = spec.length as usize;
    if spec.require_each_included_type && classes.len() > len {
        return Err(invalid(
            "The PasswordLength is too short to include a character from each included type.",
        ));
    }
    let mut out: Vec<char> = Vec::with_capacity(len);
    if spec.require_each_included_type {
        for c in &classes {
            out.push(c[uniform(c.len())?]);
        }
    }
    while out.len() < len {
        out.push(all[uniform(all.len())?]);
    }
    // Fisher–Yates, so the required characters are not always first.
    for i in (1..out.len()).rev() {
        let j = uniform(i + 1)?;
        out.swap(i, j);
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_every_option() {
        let p = generate(&PasswordSpec::default()).unwrap();
        assert_eq!(p.chars().count(), 32);
        let s = PasswordSpec {
            length: 4,
            exclude_punctuation: true,
            ..Default::default()
        };
        for _ in 0..50 {
            let p = generate(&s).unwrap();
            assert!(p.chars().any(|c| c.is_ascii_lowercase()), "{p}");
            assert!(p.chars().any(|c| c.is_ascii_uppercase()), "{p}");
            assert!(p.chars().any(|c| c.is_ascii_digit()), "{p}");
            assert!(p.chars().all(|c| c.is_ascii_alphanumeric()), "{p}");
        }
        let s = PasswordSpec {
            length: 200,
            exclude_characters: "abc".into(),
            exclude_uppercase: true,
            exclude_numbers: true,
            exclude_punctuation: true,
            include_space: true,
            ..Default::default()
        };
        let p = generate(&s).unwrap();
        assert!(p.contains(' '));
        assert!(!p.contains(['a', 'b', 'c']));
        assert!(p.chars().all(|c| c == ' ' || c.is_ascii_lowercase()));
        let e = generate(&PasswordSpec {
            length: 3,
            include_space: true,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.code, "InvalidParameterException");
        assert!(generate(&PasswordSpec {
            length: 0,
            ..Default::default()
        })
        .is_err());
        assert!(generate(&PasswordSpec {
            exclude_lowercase: true,
            exclude_uppercase: true,
            exclude_numbers: true,
            exclude_punctuation: true,
            ..Default::default()
        })
        .is_err());
    }
}
