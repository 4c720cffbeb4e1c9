//! `nimbus get NAME [--output text|json]`: a readable summary of one function (its
//! configuration, instances, queue, versions and aliases), or the control API's
//! JSON with `--output json`.

use crate::client::Client;
use anyhow::Result;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    name: String,
    /// `text` (a summary) or `json` (the control API's document, for scripts).
    #[arg(long, short = 'o', value_parser = ["text", "json"], default_value = "text")]
    output: String,
}

pub async fn run(client: &Client, a: Args) -> Result<i32> {
    let v = client
        .get_json(&format!("/_nimbus/functions/{}", a.name))
        .await?;
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", summary(&v));
    }
    Ok(0)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn when(ms: &Value) -> String {
    ms.as_i64()
        .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The text form: one `label: value` line per setting, then the runtime state.
fn summary(v: &Value) -> String {
    let f = &v["function"];
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        if !value.is_empty() {
            out.push_str(&format!("{label:<22}{value}\n"));
        }
    };
    line("Function", s(&f["name"]));
    line("Description", s(&f["description"]));
    line(
        "Runtime",
        format!("{} {}", s(&f["runtime"]), s(&f["handler"]))
            .trim()
            .to_string(),
    );
    line("Memory", format!("{} MB", s(&f["memory_mb"])));
    line("Timeout", format!("{} s", s(&f["timeout_s"])));
    line(
        "Ephemeral storage",
        format!("{} MB", s(&f["ephemeral_storage_mb"])),
    );
    line("Architectures", {
        let a: Vec<String> = f["architectures"]
            .as_array()
            .map(|a| a.iter().map(s).collect())
            .unwrap_or_default();
        a.join(", ")
    });
    line("Role", s(&f["role"]));
    line(
        "Code",
        format!(
            "sha256 {} ({} bytes)",
            s(&f["code_sha256"]).get(..12).unwrap_or(""),
            s(&f["code_size"])
        ),
    );
    line(
        "Revision",
        format!(
            "{} (modified {})",
            s(&f["revision"]),
            when(&f["last_modified_ms"])
        ),
    );
    line("Reserved concurrency", s(&f["reserved_concurrency"]));
    if f["provisioned_concurrency"].as_u64().unwrap_or(0) > 0 {
        line("Provisioned", s(&f["provisioned_concurrency"]));
    }
    line("Dead-letter target", s(&f["dead_letter_target"]));
    line("Tracing", s(&f["tracing_mode"]));
    if let Some(env) = f["environment"].as_object().filter(|e| !e.is_empty()) {
        let keys: Vec<&str> = env.keys().map(String::as_str).collect();
        // Values may be secrets: names only (`--output json` shows them).
        line("Environment", keys.join(", "));
    }
    if let Some(tags) = f["tags"].as_object().filter(|t| !t.is_empty()) {
        let t: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
        line("Tags", t.join(", "));
    }
    let versions: Vec<String> = v["versions"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    line("Versions", versions.join(", "));
    if let Some(aliases) = v["aliases"].as_array().filter(|a| !a.is_empty()) {
        let a: Vec<String> = aliases
            .iter()
            .map(|a| format!("{} -> {}", s(&a["name"]), s(&a["function_version"])))
            .collect();
        line("Aliases", a.join(", "));
    }
    line("In flight", s(&v["in_flight"]));
    line(
        "Async queue",
        format!(
            "{} queued, oldest {} ms",
            s(&v["queue"]["depth"]),
            s(&v["queue"]["oldest_age_ms"])
        ),
    );
    let instances = v["instances"].as_array().cloned().unwrap_or_default();
    line("Instances", instances.len().to_string());
    for i in &instances {
        line(
            "",
            format!(
                "{} pid {} {} revision {}{}",
                s(&i["id"]),
                s(&i["pid"]),
                s(&i["state"]).to_lowercase(),
                s(&i["revision"]),
                if i["provisioned"].as_bool() == Some(true) {
                    " (provisioned)"
                } else {
                    ""
                }
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_readable_and_hides_env_values() {
        let v = serde_json::json!({
            "function": {
                "name": "greet", "runtime": "python3.12", "handler": "app.handler",
                "memory_mb": 256, "timeout_s": 10, "ephemeral_storage_mb": 512,
                "architectures": ["x86_64"], "code_sha256": "abcdef0123456789", "code_size": 373,
                "revision": 2, "last_modified_ms": 0, "environment": {"DB_PASSWORD": "hunter2"},
                "description": "", "tags": {}
            },
            "instances": [{"id": "i-1", "pid": 42, "state": "Idle", "revision": 2, "provisioned": false}],
            "in_flight": 0, "queue": {"depth": 0, "oldest_age_ms": 0},
            "versions": ["1"], "aliases": [{"name": "live", "function_version": "1"}]
        });
        let text = summary(&v);
        assert!(text.contains("Function              greet\n"), "{text}");
        assert!(
            text.contains("Runtime               python3.12 app.handler\n"),
            "{text}"
        );
        assert!(text.contains("Memory                256 MB\n"), "{text}");
        assert!(text.contains("Aliases               live -> 1\n"), "{text}");
        assert!(text.contains("i-1 pid 42 idle revision 2"), "{text}");
        assert!(
            text.contains("DB_PASSWORD") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(!text.contains("Description"), "{text}");
    }
}
