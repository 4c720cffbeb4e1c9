//! Dependency order: `DependsOn` and the `Ref`/`Fn::GetAtt`/`Fn::Sub` references
//! between a template's resources, sorted topologically (creation order; deletion
//! runs it backwards). A cycle is refused with the resources on it.

use std::collections::{BTreeMap, BTreeSet};

/// A dependency cycle, or a `DependsOn` naming no resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("circular dependency between resources: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("resource {0} DependsOn {1}, which the template does not declare")]
    Unknown(String, String),
}

/// `deps`: logical id → the logical ids it needs first. The order is stable:
/// among resources ready at once, by logical id.
pub fn order(deps: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<String>, GraphError> {
    for (n, ds) in deps {
        for d in ds {
            if !deps.contains_key(d) {
                return Err(GraphError::Unknown(n.clone(), d.clone()));
            }
        }
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::with_capacity(deps.len());
    while out.len() < deps.len() {
        let ready: Vec<&String> = deps
            .iter()
            .filter(|(n, ds)| {
                !done.contains(n.as_str()) && ds.iter().all(|d| done.contains(d.as_str()))
            })
            .map(|(n, _)| n)
            .collect();
        if ready.is_empty() {
            return Err(GraphError::Cycle(cycle(deps, &done)));
        }
        for n in ready {
            done.insert(n);
            out.push(n.clone());
        }
    }
    Ok(out)
}

/// One cycle among the resources not yet ordered, as a path that returns to its start.
fn cycle(deps: &BTreeMap<String, BTreeSet<String>>, done: &BTreeSet<&str>) -> Vec<String> {
    let start = deps
        .keys()
        .find(|n| !done.contains(n.as_str()))
        .expect("an unordered resource");
    let mut path: Vec<String> = vec![start.clone()];
    let mut cur = start.clone();
    loop {
        let next = deps[&cur]
            .iter()
            .find(|d| !done.contains(d.as_str()))
            .expect("a blocked resource has an unordered dependency")
            .clone();
        if let Some(i) = path.iter().position(|p| *p == next) {
            let mut c = path[i..].to_vec();
            c.push(next);
            return c;
        }
        path.push(next.clone());
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(edges: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        edges
            .iter()
            .map(|(n, ds)| (n.to_string(), ds.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    #[test]
    fn orders_and_refuses_cycles() {
        type Case = (
            BTreeMap<String, BTreeSet<String>>,
            Result<Vec<&'static str>, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                g(&[("Map", &["Queue"]), ("Queue", &["Dlq"]), ("Dlq", &[])]),
                Ok(vec!["Dlq", "Queue", "Map"]),
            ),
            (
                g(&[("B", &[]), ("A", &[]), ("C", &["A", "B"])]),
                Ok(vec!["A", "B", "C"]),
            ),
            (g(&[]), Ok(vec![])),
            (
                g(&[("A", &["B"]), ("B", &["C"]), ("C", &["A"]), ("D", &[])]),
                Err("A -> B -> C -> A"),
            ),
            (g(&[("A", &["A"])]), Err("A -> A")),
            (g(&[("A", &["Nope"])]), Err("does not declare")),
        ];
        for (deps, want) in cases {
            match (order(&deps), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w),
                (Err(e), Err(m)) => assert!(e.to_string().contains(m), "{e}"),
                (got, w) => panic!("{deps:?}: got {got:?}, want {w:?}"),
            }
        }
    }
}
