//! What an instance of a function with Lambda layers sees: the layers' merged
//! tree (one directory per layer set, assembled by the invoker) and the
//! environment Lambda sets for it.
//!
//! On Lambda the tree is at `/opt`. An instance that runs in its own mount
//! namespace gets the directory bind-mounted there and [`layer_env`] of
//! [`OPT_MOUNT`]; without a mount namespace the instance is given the real
//! path, and [`layer_env`] of that path. Either way the variables come from this
//! one function, so the two cases cannot drift apart.
//!
//! The Python bootstrap reads [`PYTHON_LAYER_VAR`] after a spare's claim (like
//! `NIMBUS_SDK_PYTHON`) and puts its entries on `sys.path` after the function's
//! code and before the SDK dir; the Node bootstrap re-reads `NODE_PATH` at the
//! claim. `LD_LIBRARY_PATH` is read by the dynamic linker at process start only,
//! so a layer set with a `lib/` dir is never given a spare
//! ([`needs_fresh_process`]).

use nimbus_core::Runtime;
use std::path::Path;

/// Where Lambda mounts a function's layers.
pub const OPT_MOUNT: &str = "/opt";

/// The variable whose `:`-separated entries the Python bootstrap puts on
/// `sys.path` right after `LAMBDA_TASK_ROOT`.
pub const PYTHON_LAYER_VAR: &str = "NIMBUS_LAYER_PYTHON";

/// `PATH` of every instance, as Lambda's (without its `/var/lang/bin`).
pub const BASE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The environment Lambda sets for layers extracted under `opt_root`:
///
/// * Python: `<opt>/python/lib/python3.N/site-packages` and `<opt>/python` on the
///   module path (in that order, as Lambda's `sys.path` has them);
/// * Node.js: `<opt>/nodejs/nodeN/node_modules` and `<opt>/nodejs/node_modules`
///   on `NODE_PATH`;
/// * every runtime: `<opt>/bin` last on `PATH`, `<opt>/lib` on `LD_LIBRARY_PATH`.
///
/// Combine it with the rest of an instance's environment with [`merge_into`].
pub fn layer_env(opt_root: &Path, runtime: Runtime) -> Vec<(String, String)> {
    let at = |sub: &str| opt_root.join(sub).to_string_lossy().into_owned();
    let mut env = Vec::new();
    match runtime {
        Runtime::Python { minor } => env.push((
            PYTHON_LAYER_VAR.to_owned(),
            format!(
                "{}:{}",
                at(&format!("python/lib/python3.{minor}/site-packages")),
                at("python")
            ),
        )),
        Runtime::Node { major } => env.push((
            "NODE_PATH".to_owned(),
            format!(
                "{}:{}",
                at(&format!("nodejs/node{major}/node_modules")),
                at("nodejs/node_modules")
            ),
        )),
        Runtime::Provided(_) => {}
    }
    env.push(("PATH".to_owned(), format!("{BASE_PATH}:{}", at("bin"))));
    env.push(("LD_LIBRARY_PATH".to_owned(), at("lib")));
    env
}

/// Add [`layer_env`]'s variables to an instance's environment: `NODE_PATH` goes
/// in front of one already there (the SDK dir, searched after the layers, as
/// Lambda's `/var/runtime/node_modules` is); every other variable replaces its
/// earlier value. Call it before the function's own variables are added, so
/// those still win.
pub fn merge_into(env: &mut Vec<(String, String)>, layer: Vec<(String, String)>) {
    for (k, v) in layer {
        match env.iter_mut().rev().find(|(name, _)| *name == k) {
            Some((_, old)) if k == "NODE_PATH" && !old.is_empty() => *old = format!("{v}:{old}"),
            Some((_, old)) => *old = v,
            None => env.push((k, v)),
        }
    }
}

/// Whether an instance over this layer tree must be a fresh process rather than
/// a claimed spare: the dynamic linker reads `LD_LIBRARY_PATH` only when a
/// process starts, so libraries in `<opt>/lib` would not be found by a spare.
pub fn needs_fresh_process(opt_dir: &Path) -> bool {
    std::fs::read_dir(opt_dir.join("lib"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn python_gets_lambdas_paths() {
        let env = layer_env(Path::new(OPT_MOUNT), "python3.12".parse().unwrap());
        assert_eq!(
            get(&env, PYTHON_LAYER_VAR),
            Some("/opt/python/lib/python3.12/site-packages:/opt/python")
        );
        assert_eq!(
            get(&env, "PATH"),
            Some("/usr/local/bin:/usr/bin:/bin:/opt/bin")
        );
        assert_eq!(get(&env, "LD_LIBRARY_PATH"), Some("/opt/lib"));
        assert_eq!(get(&env, "NODE_PATH"), None);
    }

    #[test]
    fn node_paths_go_before_the_sdk_and_the_function_still_wins() {
        let real = Path::new("/data/opt/abc");
        let mut env = vec![
            ("PATH".to_owned(), BASE_PATH.to_owned()),
            ("NODE_PATH".to_owned(), "/sdk/node_modules".to_owned()),
        ];
        merge_into(&mut env, layer_env(real, "nodejs20.x".parse().unwrap()));
        assert_eq!(
            get(&env, "NODE_PATH"),
            Some("/data/opt/abc/nodejs/node20/node_modules:/data/opt/abc/nodejs/node_modules:/sdk/node_modules")
        );
        assert_eq!(
            get(&env, "PATH"),
            Some("/usr/local/bin:/usr/bin:/bin:/data/opt/abc/bin")
        );
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
        // The function's own variables come after and replace.
        env.push(("NODE_PATH".to_owned(), "/mine".to_owned()));
        assert_eq!(get(&env, "NODE_PATH"), Some("/mine"));
    }

    #[test]
    fn a_lib_dir_rules_out_a_spare() {
        let d = tempfile::tempdir().unwrap();
        assert!(!needs_fresh_process(d.path()));
        std::fs::create_dir(d.path().join("lib")).unwrap();
        assert!(!needs_fresh_process(d.path()));
        std::fs::write(d.path().join("lib/libx.so"), b"").unwrap();
        assert!(needs_fresh_process(d.path()));
    }
}
