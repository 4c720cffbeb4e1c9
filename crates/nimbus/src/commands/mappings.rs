//! `nimbus mappings`: the event-source mappings (Lambda's
//! `ListEventSourceMappings`), optionally of one function or one source.

use crate::client::Client;
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Only the mappings of this function (name, name:qualifier or ARN).
    #[arg(long)]
    function: Option<String>,
    /// Only the mappings of this event source (queue or stream ARN).
    #[arg(long)]
    source: Option<String>,
}

/// Percent-encode a query value (everything but RFC 3986's unreserved bytes).
pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every mapping (all pages) of `function` and/or `source`, as Lambda lists them.
pub async fn list_all(
    client: &Client,
    function: Option<&str>,
    source: Option<&str>,
) -> Result<Vec<serde_json::Value>> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut q = vec!["MaxItems=100".to_string()];
        if let Some(f) = &function {
            q.push(format!("FunctionName={}", enc(f)));
        }
        if let Some(s) = &source {
            q.push(format!("EventSourceArn={}", enc(s)));
        }
        if let Some(m) = &marker {
            q.push(format!("Marker={}", enc(m)));
        }
        let v = client
            .get_json(&format!(
                "/2015-03-31/event-source-mappings/?{}",
                q.join("&")
            ))
            .await?;
        all.extend(
            v["EventSourceMappings"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        match v["NextMarker"].as_str() {
            Some(m) => marker = Some(m.to_string()),
            None => break,
        }
    }
    Ok(all)
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let all = list_all(client, args.function.as_deref(), args.source.as_deref()).await?;
    if all.is_empty() {
        println!("no event-source mappings");
        return Ok(0);
    }
    println!(
        "{:<36}  {:<9}  {:<24}  {:>6}  {:<28}  SOURCE",
        "UUID", "STATE", "FUNCTION", "BATCH", "LAST RESULT"
    );
    for m in all {
        let function = m["FunctionArn"]
            .as_str()
            .and_then(|a| a.split_once(":function:").map(|(_, f)| f.to_string()))
            .unwrap_or_default();
        println!(
            "{:<36}  {:<9}  {:<24}  {:>6}  {:<28}  {}",
            m["UUID"].as_str().unwrap_or(""),
            m["State"].as_str().unwrap_or(""),
            function,
            m["BatchSize"],
            m["LastProcessingResult"].as_str().unwrap_or("-"),
            m["EventSourceArn"].as_str().unwrap_or(""),
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            super::enc("arn:aws:sqs:us-east-1:1:q a/b"),
            "arn%3Aaws%3Asqs%3Aus-east-1%3A1%3Aq%20a%2Fb"
        );
    }
}
