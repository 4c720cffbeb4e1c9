//! Runtime identifiers (`python3.12`, `nodejs20.x`, `provided.al2023`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A runtime as named in a function's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Runtime {
    /// `python3.N`
    Python { minor: u32 },
    /// `nodejsN.x`
    Node { major: u32 },
    /// `provided`, `provided.al2`, `provided.al2023`: the bundle's own `bootstrap`.
    Provided(ProvidedFlavor),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProvidedFlavor {
    Al1,
    Al2,
    Al2023,
}

/// The runtime string is not one Nimbus knows.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Value {0} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [python3.9, python3.10, python3.11, python3.12, python3.13, nodejs18.x, nodejs20.x, nodejs22.x, provided, provided.al2, provided.al2023]")]
pub struct UnknownRuntime(pub String);

impl FromStr for Runtime {
    type Err = UnknownRuntime;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownRuntime(s.to_string());
        if let Some(minor) = s.strip_prefix("python3.") {
            let minor: u32 = minor.parse().map_err(|_| bad())?;
            if !(8..=20).contains(&minor) {
                return Err(bad());
            }
            return Ok(Runtime::Python { minor });
        }
        if let Some(rest) = s.strip_prefix("nodejs") {
            let major: u32 = rest
                .strip_suffix(".x")
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            if !(14..=40).contains(&major) {
                return Err(bad());
            }
            return Ok(Runtime::Node { major });
        }
        match s {
            "provided" => Ok(Runtime::Provided(ProvidedFlavor::Al1)),
            "provided.al2" => Ok(Runtime::Provided(ProvidedFlavor::Al2)),
            "provided.al2023" => Ok(Runtime::Provided(ProvidedFlavor::Al2023)),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for Runtime {
    type Error = UnknownRuntime;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Runtime> for String {
    fn from(r: Runtime) -> String {
        r.to_string()
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Runtime::Python { minor } => write!(f, "python3.{minor}"),
            Runtime::Node { major } => write!(f, "nodejs{major}.x"),
            Runtime::Provided(ProvidedFlavor::Al1) => f.write_str("provided"),
            Runtime::Provided(ProvidedFlavor::Al2) => f.write_str("provided.al2"),
            Runtime::Provided(ProvidedFlavor::Al2023) => f.write_str("provided.al2023"),
        }
    }
}

impl Runtime {
    /// `AWS_EXECUTION_ENV` as Lambda sets it (`AWS_Lambda_python3.12`); unset for `provided`.
    pub fn execution_env(&self) -> Option<String> {
        match self {
            Runtime::Provided(_) => None,
            other => Some(format!("AWS_Lambda_{other}")),
        }
    }

    /// Whether the handler string must look like `module.function`.
    pub fn needs_handler(&self) -> bool {
        !matches!(self, Runtime::Provided(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for s in [
            "python3.12",
            "python3.9",
            "nodejs20.x",
            "provided",
            "provided.al2",
            "provided.al2023",
        ] {
            let r: Runtime = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
    }

    #[test]
    fn rejects_unknown() {
        for s in [
            "python2.7",
            "python3",
            "nodejs20",
            "java21",
            "go1.x",
            "",
            "python3.x",
        ] {
            assert!(s.parse::<Runtime>().is_err(), "{s}");
        }
    }

    #[test]
    fn execution_env() {
        let r: Runtime = "python3.11".parse().unwrap();
        assert_eq!(r.execution_env().as_deref(), Some("AWS_Lambda_python3.11"));
        assert_eq!(
            "provided.al2".parse::<Runtime>().unwrap().execution_env(),
            None
        );
    }
}
