//! serverless.yml `package.patterns`: which files of the service directory go
//! into the bundle, as the Framework decides. Every file is included, then each
//! pattern in order includes the files it matches, or excludes them when it
//! starts with `!` — so a later pattern wins (`'!docs/**'` then
//! `'docs/keep.md'` keeps that one file). Globs: `*` and `?` within one path
//! segment, `**` across segments, `[abc]`, `{a,b}` alternatives; a pattern
//! naming a directory (`node_modules`, `node_modules/`) covers what is under it.

/// The service's patterns, then the function's (the Framework appends them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns {
    /// `(include, pattern text)`, in order.
    list: Vec<(bool, String)>,
}

/// `{a,b}c` → `ac`, `bc` (nested braces expanded left to right).
fn expand(p: &str) -> Vec<String> {
    let Some(open) = p.find('{') else {
        return vec![p.to_string()];
    };
    let Some(close) = p[open..].find('}').map(|i| open + i) else {
        return vec![p.to_string()];
    };
    let (head, inner, tail) = (&p[..open], &p[open + 1..close], &p[close + 1..]);
    inner
        .split(',')
        .flat_map(|alt| expand(&format!("{head}{alt}{tail}")))
        .collect()
}

impl Patterns {
    /// Read the patterns; a bad glob is an error message naming it.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut list = Vec::new();
        for p in patterns {
            let (include, glob) = match p.strip_prefix('!') {
                Some(rest) => (false, rest),
                None => (true, p.as_str()),
            };
            let glob = glob.trim_start_matches("./");
            for g in expand(glob) {
                glob::Pattern::new(&g).map_err(|e| format!("pattern {p:?}: {e}"))?;
            }
            list.push((include, glob.to_string()));
        }
        Ok(Patterns { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// These patterns followed by `more`.
    pub fn then(&self, more: &Patterns) -> Patterns {
        let mut list = self.list.clone();
        list.extend(more.list.iter().cloned());
        Patterns { list }
    }

    /// Whether the file at `rel` (relative, `/`-separated) is bundled.
    pub fn includes(&self, rel: &str) -> bool {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let mut included = true;
        for (include, p) in &self.list {
            let matched = expand(p).iter().any(|g| {
                let g = g.trim_end_matches('/');
                let whole = glob::Pattern::new(g).is_ok_and(|pat| pat.matches_with(rel, opts));
                // A pattern naming a directory covers the files under it.
                let under = glob::Pattern::new(&format!("{g}/**"))
                    .is_ok_and(|pat| pat.matches_with(rel, opts));
                whole || under
            });
            if matched {
                included = *include;
            }
        }
        included
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Patterns {
        Patterns::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn later_patterns_win() {
        let ps = p(&[
            "!docs/**",
            "docs/keep.md",
            "!**/*.test.js",
            "!node_modules",
            "!.venv/",
        ]);
        assert!(ps.includes("handler.js"));
        assert!(ps.includes("src/a/b.js"));
        assert!(!ps.includes("docs/a.md"));
        assert!(ps.includes("docs/keep.md"));
        assert!(!ps.includes("src/x.test.js"));
        assert!(!ps.includes("x.test.js"));
        assert!(!ps.includes("node_modules/left-pad/index.js"));
        assert!(!ps.includes(".venv/lib/site.py"));
    }

    #[test]
    fn exclude_all_then_include() {
        let ps = p(&["!./**", "src/**", "{handler,util}.py", "!src/*.md"]);
        assert!(!ps.includes("README.md"));
        assert!(ps.includes("src/app/main.py"));
        assert!(ps.includes("handler.py") && ps.includes("util.py"));
        assert!(!ps.includes("other.py"));
        assert!(!ps.includes("src/notes.md"));
        assert!(ps.includes("src/deep/notes.md"), "* stays within a segment");
    }

    #[test]
    fn bad_globs_are_named() {
        let e = Patterns::new(&["[".to_string()]).unwrap_err();
        assert!(e.contains("\"[\""), "{e}");
    }
}
